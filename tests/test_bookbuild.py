"""The book builder finds chapters in the toc and refuses missing parameter files."""

from pathlib import Path

import pytest

from cca_lib import bookbuild

ROOT = Path(__file__).resolve().parent.parent


def test_toc_lists_executed_chapters_in_order(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - chapters:\n      - file: book/executed/b\n      - file: book/method\n"
        "  - chapters:\n      - file: book/executed/a.ipynb\n"
        "        sections:\n          - file: book/executed/c\n"
    )
    assert bookbuild.toc_chapters(toc) == ["b", "a", "c"]


def test_every_toc_chapter_has_a_notebook_and_both_profiles():
    chapters = bookbuild.toc_chapters(ROOT / "_toc.yml")
    assert chapters, "the book lists no executed chapters"
    for name in chapters:
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), name
        for profile in bookbuild.PROFILES:
            params = bookbuild.load_params(ROOT, profile, name)
            assert isinstance(params, dict)


def test_params_match_the_notebook_parameters_cell():
    """A parameter file may only set names the notebook's parameters cell defines."""
    import nbformat

    for name in bookbuild.toc_chapters(ROOT / "_toc.yml"):
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
        assert nb.cells.index(cells[0]) <= 1, f"{name}: parameters cell must come first"
        defined = {line.split("=")[0].strip() for line in cells[0].source.splitlines()
                   if "=" in line and not line.lstrip().startswith("#")}
        for profile in bookbuild.PROFILES:
            extra = set(bookbuild.load_params(ROOT, profile, name)) - defined
            assert not extra, f"params/{profile}/{name}.yaml sets unknown parameters {extra}"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{name}: notebooks are stored without outputs"


def test_missing_or_malformed_params_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        bookbuild.load_params(tmp_path, "quick", "nope")
    (tmp_path / "params" / "quick").mkdir(parents=True)
    (tmp_path / "params" / "quick" / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        bookbuild.load_params(tmp_path, "quick", "bad")


def test_unknown_chapter_is_refused(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: intro\nchapters:\n  - file: book/executed/a\n")
    with pytest.raises(SystemExit, match="not chapters"):
        bookbuild.build(tmp_path, "quick", only=["zzz"])
