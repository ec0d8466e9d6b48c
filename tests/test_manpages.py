"""Man pages hahooks(8) and hahooks.toml(5): generated from the parser and the kinds' PARAMS
(hahooks.manpages); the committed copies in man/ must match the code, and man renders them."""
from __future__ import annotations

import os
import shutil
import subprocess

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

