"""The book's text: every reference listed is cited and every citation listed, every glossary
term used is defined, and exercises come with one solution each."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
TERM = re.compile(r"\{term\}`([^`]+)`")


def _texts() -> dict[str, str]:
    """Every hand-written page and every notebook's markdown, by file name."""
    import nbformat

    texts = {p.name: p.read_text() for p in sorted((ROOT / "book").glob("*.md"))}
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        texts[p.name] = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return texts


def _bib_keys() -> set[str]:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (ROOT / "book/references.bib").read_text(), re.M))


def test_every_reference_is_cited_and_every_citation_listed():
    cited: dict[str, set[str]] = {}
    for name, text in _texts().items():
        for group in CITE.findall(text):
            for key in group.split(","):
                cited.setdefault(key.strip(), set()).add(name)
    keys = _bib_keys()
    assert not set(cited) - keys, f"cited but not in references.bib: {sorted(set(cited) - keys)}"
    assert not keys - set(cited), f"in references.bib but never cited: {sorted(keys - set(cited))}"


def test_every_term_used_is_in_the_glossary():
    glossary = (ROOT / "book/glossary.md").read_text()
    block = glossary.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    defined = {line.strip().lower() for line in block.splitlines()
               if line.strip() and not line.startswith(" ")}
    for name, text in _texts().items():
        for role in TERM.findall(text):
            target = re.search(r"<([^>]+)>$", role)
            term = (target[1] if target else role).strip().lower()
            assert term in defined, f"{name}: {{term}} `{role}` is not defined in the glossary"


def test_exercises_have_one_solution_each():
    for name, text in _texts().items():
        if "## Exercises" not in text:
            continue
        section = text.split("## Exercises", 1)[1].split("\n## ", 1)[0]
        asked = [int(n) for n in re.findall(r"^(\d+)\. ", section, re.M)]
        answered = [int(n) for n in re.findall(r"Solution to exercise (\d+)", section)]
        assert asked == list(range(1, len(asked) + 1)), f"{name}: exercises numbered {asked}"
        assert answered == asked, f"{name}: exercises {asked}, solutions {answered}"
