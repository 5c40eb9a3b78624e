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
    import papermill

    for name in bookbuild.toc_chapters(ROOT / "_toc.yml"):
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{name}: expected one cell tagged 'parameters'"
        # first, after the install cell (tests/test_launch.py checks that one)
        code = [c for c in nb.cells if c.cell_type == "code"
                and not c.source.startswith("# Install cca_lib where it is missing")]
        assert code[0] is cells[0], f"{name}: parameters cell must come first"
        # papermill's own parser (what `papermill --help-notebook` shows): every parameter
        # must parse and carry a help comment
        inferred = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        assigned = {line.split("=")[0].strip() for line in cells[0].source.splitlines()
                    if "=" in line and not line.lstrip().startswith("#")}
        unparsed = assigned - set(inferred)
        assert not unparsed, f"{name}: papermill cannot parse the lines of {unparsed}"
        undocumented = [k for k, v in inferred.items() if not v["help"].strip()]
        assert not undocumented, f"{name}: parameters without a help comment: {undocumented}"
        defined = set(inferred)
        for profile in bookbuild.PROFILES:
            extra = set(bookbuild.load_params(ROOT, profile, name)) - defined
            assert not extra, f"params/{profile}/{name}.yaml sets unknown parameters {extra}"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{name}: notebooks are stored without outputs"


def test_missing_or_malformed_params_are_errors(tmp_path):
    assert bookbuild.load_params(tmp_path, "quick", "nope") == {}  # quick: the defaults
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        bookbuild.load_params(tmp_path, "full", "nope")
    (tmp_path / "params" / "full").mkdir(parents=True)
    (tmp_path / "params" / "full" / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        bookbuild.load_params(tmp_path, "full", "bad")
    with pytest.raises(ValueError, match="profile"):
        bookbuild.load_params(tmp_path, "fast", "bad")


def test_unknown_chapter_is_refused(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: intro\nchapters:\n  - file: book/executed/a\n")
    with pytest.raises(SystemExit, match="not chapters"):
        bookbuild.build(tmp_path, "quick", only=["zzz"])


def _chapter(tmp_path, name, source):
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    (tmp_path / "notebooks").mkdir(exist_ok=True)
    nbformat.write(nb, tmp_path / "notebooks" / f"{name}.ipynb")
    (tmp_path / "params" / "full").mkdir(parents=True, exist_ok=True)
    (tmp_path / "params" / "full" / f"{name}.yaml").write_text("x: 3\n")


def test_build_runs_chapters_in_parallel_with_pinned_threads(tmp_path, monkeypatch):
    import nbformat

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    (tmp_path / "_toc.yml").write_text(
        "root: intro\nchapters:\n  - file: book/executed/a\n  - file: book/executed/b\n")
    check = ("import os\nassert x == 3\n"
             "assert os.environ['OMP_NUM_THREADS'] == '1', os.environ['OMP_NUM_THREADS']\n"
             "from cca_lib import _progress\nassert not _progress.enabled(True)\n"
             "print('threads', os.environ['OMP_NUM_THREADS'])")
    _chapter(tmp_path, "a", check)
    _chapter(tmp_path, "b", check)
    bookbuild.build(tmp_path, "full", jobs=2, threads=1)
    for name in ("a", "b"):
        nb = nbformat.read(tmp_path / "book" / "executed" / f"{name}.ipynb", as_version=4)
        assert "threads 1" in nb.cells[-1].outputs[0]["text"]
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert len(injected) == 1 and "hide-input" in injected[0].metadata["tags"]
    assert (tmp_path / "book" / "generated" / "scorecard.md").is_file()


def test_failed_chapter_is_kept_aside_and_fails_the_build(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "root: intro\nchapters:\n  - file: book/executed/good\n  - file: book/executed/bad\n")
    _chapter(tmp_path, "good", "y = x + 1")
    _chapter(tmp_path, "bad", "raise RuntimeError('boom')")
    with pytest.raises(SystemExit, match="1 chapter.*failed: bad"):
        bookbuild.build(tmp_path, "quick", jobs=2)
    executed = tmp_path / "book" / "executed"
    assert (executed / "good.ipynb").is_file()
    assert (executed / "bad.failed.ipynb").is_file()
    assert not (executed / "bad.ipynb").exists()
    assert not (tmp_path / "book" / "generated" / "scorecard.md").exists()


@pytest.mark.parametrize("arg", [{"jobs": 0}, {"threads": 0}, {"jobs": 1.5}, {"threads": True}])
def test_jobs_and_threads_are_validated(tmp_path, arg):
    with pytest.raises(ValueError, match=next(iter(arg))):
        bookbuild.build(tmp_path, "quick", **arg)


def test_parameter_table_lists_every_parameter_with_both_profiles():
    import papermill

    for name in bookbuild.toc_chapters(ROOT / "_toc.yml"):
        inferred = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        table = bookbuild.parameter_table(name, {"seed": 123}, root=ROOT)
        assert list(table.index) == list(inferred), name
        assert {"meaning", "paper", "quick", "full", "this run"} <= set(table.columns)
        assert not table["meaning"].str.contains(r"\(paper:").any(), name
        config = getattr(bookbuild.chapter_module(name), "Config", None)
        if config is not None:  # the quick profile is the Config defaults
            for param, value in config.defaults().items():
                assert table.loc[param, "quick"] == repr(value), (name, param)
        if "seed" in table.index:
            assert table.loc["seed", "this run"] == "123"
    table = bookbuild.parameter_table("signal_noise", root=ROOT)
    assert table.loc["n_neurons", "paper"] == "200" and "this run" not in table.columns


def test_progress_bars_can_be_switched_off(monkeypatch):
    from cca_lib import _progress

    monkeypatch.delenv(_progress.PROGRESS_ENV, raising=False)
    assert _progress.enabled(True) and not _progress.enabled(False)
    assert not _progress.bar(range(3), progress=True).disable
    monkeypatch.setenv(_progress.PROGRESS_ENV, "0")
    assert not _progress.enabled(True)
    assert _progress.bar(range(3), progress=True).disable
    assert list(_progress.bar(range(3))) == [0, 1, 2]


def test_schedule_order_respects_dependencies_then_cost():
    meta = {"a": {"after": [], "cost": 1.0}, "b": {"after": [], "cost": 50.0},
            "c": {"after": ["a"], "cost": 99.0}, "d": {"after": ["zzz"], "cost": 5.0}}
    assert bookbuild.schedule_order(["a", "b", "c", "d"], meta) == ["b", "d", "a", "c"]
    assert bookbuild.schedule_order(["c"], meta) == ["c"]  # a is not selected: c may start
    cyc = {"x": {"after": ["y"], "cost": 0.0}, "y": {"after": ["x"], "cost": 0.0}}
    with pytest.raises(ValueError, match="cycle"):
        bookbuild.schedule_order(["x", "y"], cyc)


def test_book_chapters_have_valid_scheduling_metadata():
    chapters = bookbuild.toc_chapters(ROOT / "_toc.yml")
    meta = {name: bookbuild.chapter_meta(ROOT, name) for name in chapters}
    assert set(bookbuild.schedule_order(chapters, meta)) == set(chapters)
    assert all(set(m["after"]) <= set(chapters) for m in meta.values())


def test_a_chapter_waits_for_the_one_it_reuses(tmp_path):
    import json

    (tmp_path / "_toc.yml").write_text(
        "root: intro\nchapters:\n  - file: book/executed/late\n  - file: book/executed/first\n")
    stamp = "import time, pathlib\npathlib.Path('{}').write_text(str(time.time()))\n"
    _chapter(tmp_path, "first", "import time\ntime.sleep(1)\n" + stamp.format("first.t"))
    _chapter(tmp_path, "late", stamp.format("late.t"))
    nbs = tmp_path / "notebooks"
    for name, meta in (("late", {"after": ["first"], "cost": 100}), ("first", {"cost": 1})):
        nb = json.loads((nbs / f"{name}.ipynb").read_text())
        nb["metadata"]["cca_book"] = meta
        (nbs / f"{name}.ipynb").write_text(json.dumps(nb))
    bookbuild.build(tmp_path, "quick", jobs=2)
    assert float((nbs / "late.t").read_text()) > float((nbs / "first.t").read_text())


def test_a_chapter_whose_dependency_failed_is_skipped(tmp_path, capsys):
    import json

    (tmp_path / "_toc.yml").write_text(
        "root: intro\nchapters:\n  - file: book/executed/base\n  - file: book/executed/user\n")
    _chapter(tmp_path, "base", "raise RuntimeError('boom')")
    _chapter(tmp_path, "user", "y = 1")
    path = tmp_path / "notebooks" / "user.ipynb"
    nb = json.loads(path.read_text())
    nb["metadata"]["cca_book"] = {"after": ["base"]}
    path.write_text(json.dumps(nb))
    with pytest.raises(SystemExit, match="2 chapter.*failed: base, user"):
        bookbuild.build(tmp_path, "quick", jobs=2)
    assert "SKIPPED user: base failed" in capsys.readouterr().err
    assert not (tmp_path / "book" / "executed" / "user.ipynb").exists()
