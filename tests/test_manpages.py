"""Man pages hahooks(8) and hahooks.toml(5): generated from the parser and the kinds' PARAMS
(hahooks.manpages); the committed copies in man/ must match the code, and man renders them."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, require_tool
from hahooks import manpages

MAN = os.path.join(ROOT, "man")


def test_committed_pages_match_the_code():
    """Fails when a subcommand, an option or a config key changed without
    `python3 -m hahooks.manpages man/`."""
    for page, render in manpages.PAGES.items():
        with open(os.path.join(MAN, page), encoding="utf-8") as fh:
            assert fh.read() == getattr(manpages, render)(), f"man/{page} is stale"


def test_check_mode_reports_a_stale_page(tmp_path):
    for page in manpages.PAGES:
        shutil.copy(os.path.join(MAN, page), tmp_path / page)
    assert manpages.main(["--check", str(tmp_path)]) == 0
    with open(tmp_path / "hahooks.8", "a") as fh:
        fh.write(".PP\nhand edit\n")
    assert manpages.main(["--check", str(tmp_path)]) == 1
    assert manpages.main([str(tmp_path)]) == 0                       # rewrites it
    assert manpages.main(["--check", str(tmp_path)]) == 0


def test_pages_cover_every_command_and_kind():
    eight = manpages.render_hahooks_8()
    for command in ("master", "slave", "status", "check", "install\\-wiring", "render",
                    "devd\\-event", "heartbeat"):
        assert f".SS {command}\n" in eight, command
    assert ".SS worker\n" not in eight                       # hidden from --help: not here
    five = manpages.render_hahooks_toml_5()
    from hahooks import kinds

    for kind in kinds.names():
        assert f'.SS kind = "{kind}"' in five
    assert '\\fBfsck\\fR ("auto" | "preen" | "force" | "never", default "auto")' in five
    assert '\\fBcommand_timeout\\fR (duration ("500ms", "30s", "2m"), default "30s")' in five


def test_man_renders_both_pages_without_warnings():
    require_tool("man")
    for page in manpages.PAGES:
        proc = subprocess.run(["man", "--warnings", "-l", os.path.join(MAN, page)],
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"})
        assert proc.returncode == 0 and proc.stderr == "", (page, proc.stderr)
        assert "hahooks" in proc.stdout



CONFIG_DOC = os.path.join(ROOT, "docs", "config.md")


def test_config_doc_key_tables_match_the_params():
    """Fails when a kind's PARAMS changed without
    `python3 -m hahooks.manpages --config-doc docs/config.md`."""
    with open(CONFIG_DOC, encoding="utf-8") as fh:
        committed = fh.read()
    assert manpages.render_config_doc(committed) == committed, "docs/config.md is stale"
    assert ('| `fsck` | "auto" \\| "preen" \\| "force" \\| "never" | `"auto"` | '
            in committed)
    assert '| `unit` | integer | (required) | fixed unit number: the device is \\<dev_dir>/md' \
        in committed


def test_config_doc_check_mode_rewrites_only_the_tables(tmp_path):
    copy = tmp_path / "config.md"
    shutil.copy(CONFIG_DOC, copy)
    assert manpages.main(["--check", "--config-doc", str(copy)]) == 0
    original = copy.read_text()
    drifted = original.replace("how long to keep trying to promote", "hand edit", 1)
    drifted = drifted.replace("## Exit codes", "## Exit codes, hand-edited prose", 1)
    assert drifted != original and "hand edit" not in original
    copy.write_text(drifted)
    assert manpages.main(["--check", "--config-doc", str(copy)]) == 1
    assert manpages.main(["--config-doc", str(copy)]) == 0              # rewrites it
    assert copy.read_text() == original.replace("## Exit codes",
                                                "## Exit codes, hand-edited prose", 1)


def test_config_doc_needs_a_table_for_every_kind_and_only_for_kinds(tmp_path):
    from hahooks import kinds

    with open(CONFIG_DOC, encoding="utf-8") as fh:
        committed = fh.read()
    for kind in kinds.names():
        assert manpages.KEYS_BEGIN.format(kind=kind) in committed, kind
    without_md = committed.replace(manpages.KEYS_BEGIN.format(kind="md"), "")
    with pytest.raises(ValueError, match="no key table for kind.* md"):
        manpages.render_config_doc(without_md)
    unknown = committed + "\n" + manpages.KEYS_BEGIN.format(kind="nfs") + "\n" + \
        manpages.KEYS_END + "\n"
    with pytest.raises(ValueError, match="'nfs', which does not exist"):
        manpages.render_config_doc(unknown)
