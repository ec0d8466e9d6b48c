"""The project's facts live in the repository: no comment or doc points at a file outside it.

Code comments, tests and docs cite upstream facts as `docs/reference/<tool>.md §N`. A clone of
the project has no fact sheets beside it, so the old sheet names and `../shared` paths must not
come back, and every citation must name a file and a section that exist. Bare `§N` (without
its file on the same line) is refused too: it was how the old sheets were cited.
"""
from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "docs", "reference")
SCANNED_DIRS = ("lib", "tests", "bench", "docs", "hooks", "ocf", "devd", "heartbeat-resource.d",
                "examples", "scripts")
SCANNED_FILES = ("README.md", "setup.cfg")
SKIP_DIRS = {"__pycache__", ".pytest_cache"}
THIS = os.path.relpath(os.path.abspath(__file__), ROOT)

OUTSIDE = [".." + "/shared", "shared" + "/reference", "freebsd" + "-tools", "lab" + "-recipes",
           "linux" + "-ha.md"]
CITATION = re.compile(r"docs/reference/([A-Za-z0-9_.-]+?\.md)(?: §(\d+)(?:[–-](\d+))?)?")
SECTION = re.compile(r"§\d")
HEADING = re.compile(r"^## (\d+)\. ", re.M)
LOCAL_LINK = re.compile(r"\]\(([A-Za-z0-9_-]+\.md)(?:#[^)]*)?\)")


def scanned_files():
    for name in SCANNED_FILES:
        if os.path.exists(os.path.join(ROOT, name)):
            yield name
    for top in SCANNED_DIRS:
        for root, dirs, names in os.walk(os.path.join(ROOT, top)):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
            for name in sorted(names):
                rel = os.path.relpath(os.path.join(root, name), ROOT)
                if rel != THIS:     # its examples below are bad citations on purpose
                    yield rel


def read(rel: str) -> str | None:
    try:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            return f.read()
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return None


def sections(name: str) -> set[int] | None:
    text = read(os.path.join("docs", "reference", name))
    return None if text is None else {int(n) for n in HEADING.findall(text)}


def problems_in(rel: str, text: str) -> list[str]:
    found = []
    in_reference = rel.startswith(os.path.join("docs", "reference") + os.sep)
    for n, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{n}"
        for bad in OUTSIDE:
            if bad in line:
                found.append(f"{where}: names {bad!r} (outside the repository): {line.strip()}")
        first_citation = None
        for m in CITATION.finditer(line):
            first_citation = m.start() if first_citation is None else first_citation
            name, sec, upto = m.groups()
            have = sections(name)
            if have is None:
                found.append(f"{where}: docs/reference/{name} does not exist")
                continue
            for number in (sec, upto):
                if number is not None and int(number) not in have:
                    found.append(f"{where}: docs/reference/{name} has no section §{number}")
        if in_reference:   # the reference files cite their own sections and link each other
            for m in LOCAL_LINK.finditer(line):
                if sections(m.group(1)) is None:
                    found.append(f"{where}: link to missing docs/reference/{m.group(1)}")
            continue
        for m in SECTION.finditer(line):
            if first_citation is None or m.start() < first_citation:
                found.append(f"{where}: §N without its docs/reference file: {line.strip()}")
                break
    return found


def test_reference_files_have_numbered_sections():
    names = sorted(n for n in os.listdir(REFERENCE) if n.endswith(".md") and n != "README.md")
    assert names, "docs/reference/ holds the fact files"
    empty = [n for n in names if not sections(n)]
    assert empty == [], f"reference files without `## N. Title` sections: {empty}"
    index = read(os.path.join("docs", "reference", "README.md")) or ""
    assert [n for n in names if f"]({n})" not in index] == [], \
        "docs/reference/README.md indexes every reference file"


def test_no_file_points_outside_the_repository():
    found = []
    for rel in scanned_files():
        text = read(rel)
        if text is not None:
            found += problems_in(rel, text)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("line, expected", [
    ("see " + "freebsd" + "-tools.md §2", "outside the repository"),
    ("(docs/reference/hast.md §99)", "has no section §99"),
    ("(docs/reference/lab.md §5–99)", "has no section §99"),
    ("(docs/reference/nothing.md §1)", "does not exist"),
    ("(§7.6)", "§N without its docs/reference file"),
])
def test_the_checker_catches(line, expected):
    assert any(expected in p for p in problems_in("x.py", line))


def test_the_checker_accepts_compressed_citations():
    assert problems_in("x.py", "(docs/reference/hast.md §3/§4, docs/reference/lab.md §5–6)") == []
