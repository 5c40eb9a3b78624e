"""How every chapter notebook is laid out for a reader: numbered figures with captions and alt
text, referred to from the text; the bookkeeping of the check cells hidden; key takeaways and
numbered exercises at the end. (What the built pages look like is checked in tests/browser.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
# a cell draws a figure when it calls a chapter's plot_* function, or matplotlib or seaborn
DRAWS = re.compile(r"\bplot_\w+\(|\bplt\.(?:subplots|figure)\(|\bplotting\.grid\(|\bsns\.\w+plot\(")
NUMREF = re.compile(r"\{numref\}`(?:[^`<]*<)?([^`>]+)>?`")


def _cells(name: str):
    import nbformat

    return nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells


def _markdown(name: str) -> str:
    return "\n\n".join(c.source for c in _cells(name) if c.cell_type == "markdown")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_figures_are_named_captioned_described_and_referred_to(name):
    referred = set(NUMREF.findall(_markdown(name)))
    names = []
    for cell in _cells(name):
        if cell.cell_type != "code" or not DRAWS.search(cell.source):
            continue
        options = cell.metadata.get("mystnb", {})
        figure, image = options.get("figure", {}), options.get("image", {})
        first = cell.source.splitlines()[0]
        assert figure.get("name", "").startswith("fig-"), f"{name}: {first!r} has no figure name"
        assert len(figure.get("caption", "").split()) >= 12, f"{name}: {first!r}: short caption"
        assert len(image.get("alt", "").split()) >= 8, f"{name}: {first!r}: no alt text"
        names.append(figure["name"])
    assert len(names) == len(set(names)), f"{name}: figure names repeat: {names}"
    assert not set(names) - referred, f"{name}: never referred to: {sorted(set(names) - referred)}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_check_cells_hide_their_bookkeeping(name):
    for cell in _cells(name):
        if cell.cell_type == "code" and "book.record(" in cell.source:
            tags = set(cell.metadata.get("tags", []))
            assert tags & {"hide-input", "remove-input"}, f"{name}: the check cell shows its code"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_chapter_ends_with_takeaways_and_exercises(name):
    text = _markdown(name)
    assert re.search(r"^:::+\{admonition\} Key takeaways", text, re.M), f"{name}: no takeaways"
    assert "## Exercises" in text, f"{name}: no exercises"
    section = text.split("## Exercises", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^1\. ", section, re.M), f"{name}: exercises are not numbered"


@pytest.mark.parametrize("name", [n for n in NOTEBOOKS
                                  if (ROOT / "cca_lib" / "experiments" / f"{n}.py").is_file()])
def test_claims_point_at_figures_of_their_chapter(name):
    """The scorecard links each claim to figures by name: those names exist in the chapter."""
    source = (ROOT / "cca_lib" / "experiments" / f"{name}.py").read_text()
    named = set()
    for cell in _cells(name):
        named.add(cell.metadata.get("mystnb", {}).get("figure", {}).get("name"))
    for match in re.finditer(r'figure="((?:[^"]|"\s*")*)"', source):
        for ref in re.sub(r'"\s*"', "", match[1]).split(","):
            ref = ref.strip()
            assert ref.startswith("fig-") and ref in named, f"{name}: claim figure {ref!r}"
