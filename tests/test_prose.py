"""What a page may say: no chapter or hand-written page refers to prototypes, to notes or
folders a reader does not have, to CPU thread counts or to earlier builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = re.compile(
    r"prototyp|feasibility|shared/|toolchain\.md|\bCPU threads?\b|\bthread counts?\b"
    r"|\b(?:one|two|\d+) threads?\b|earlier builds?|previous builds?|in our builds|last build",
    re.IGNORECASE)


def _markdown(path: Path) -> list[tuple[str, str]]:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return [(f"{path.name} cell {i}", "".join(c["source"]))
                for i, c in enumerate(cells) if c["cell_type"] == "markdown"]
    return [(path.name, path.read_text())]


PAGES = sorted(ROOT.glob("notebooks/*.ipynb")) + sorted((ROOT / "book").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_text_stands_on_its_own(page):
    found = [f"{where}: ...{m.group(0)}..." for where, text in _markdown(page)
             for m in FORBIDDEN.finditer(text)]
    assert not found, "page text refers to what a reader does not have: " + "; ".join(found)


def test_the_rule_catches_what_it_is_for():
    for text in ("the earlier prototype notes", "see FEASIBILITY.md", "../shared/datasets",
                 "the number of CPU threads", "with two threads", "in our builds"):
        assert FORBIDDEN.search(text), text
    for text in ("a thread of argument", "the training set", "shared signal"):
        assert not FORBIDDEN.search(text), text
