"""The book tooling (:mod:`cca_lib.book`): finds chapters in the toc, refuses missing parameter
files, executes and schedules chapters from their measured times, and stays apart from the
library (nothing else in cca_lib imports it)."""

from pathlib import Path

import pytest

from cca_lib import book
from cca_lib.book import schedule

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _own_data_dir(tmp_path, monkeypatch):
    """Builds here record chapter times in the data folder: keep them out of the real one."""
    from cca_lib._paths import DATA_DIR_ENV

    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))


def test_toc_lists_executed_chapters_in_order(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n"
        "  - chapters:\n      - file: book/executed/b\n      - file: book/method\n"
        "  - chapters:\n      - file: book/executed/a.ipynb\n"
        "        sections:\n          - file: book/executed/c\n"
    )
    assert book.toc_chapters(toc) == ["b", "a", "c"]


def test_every_toc_chapter_has_a_notebook_and_both_profiles():
    chapters = book.toc_chapters(ROOT / "_toc.yml")
    assert chapters, "the book lists no executed chapters"
    for name in chapters:
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), name
        for profile in book.PROFILES:
            params = book.load_params(ROOT, profile, name)
            assert isinstance(params, dict)


def test_params_match_the_notebook_parameters_cell():
    """A parameter file may only set names the notebook's parameters cell defines."""
    import nbformat
    import papermill

    for name in book.toc_chapters(ROOT / "_toc.yml"):
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
        for profile in book.PROFILES:
            extra = set(book.load_params(ROOT, profile, name)) - defined
            assert not extra, f"params/{profile}/{name}.yaml sets unknown parameters {extra}"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{name}: notebooks are stored without outputs"


def test_missing_or_malformed_params_are_errors(tmp_path):
    assert book.load_params(tmp_path, "quick", "nope") == {}  # quick: the defaults
    with pytest.raises(FileNotFoundError, match="no parameter file"):
        book.load_params(tmp_path, "full", "nope")
    (tmp_path / "params" / "full").mkdir(parents=True)
    (tmp_path / "params" / "full" / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        book.load_params(tmp_path, "full", "bad")
    with pytest.raises(ValueError, match="profile"):
        book.load_params(tmp_path, "fast", "bad")


def test_unknown_chapter_is_refused(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: intro\nchapters:\n  - file: book/executed/a\n")
    with pytest.raises(SystemExit, match="not chapters"):
        book.build(tmp_path, "quick", only=["zzz"])


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
    book.build(tmp_path, "full", jobs=2, threads=1)
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
        book.build(tmp_path, "quick", jobs=2)
    executed = tmp_path / "book" / "executed"
    assert (executed / "good.ipynb").is_file()
    assert (executed / "bad.failed.ipynb").is_file()
    assert not (executed / "bad.ipynb").exists()
    assert not (tmp_path / "book" / "generated" / "scorecard.md").exists()


@pytest.mark.parametrize("arg", [{"jobs": 0}, {"threads": 0}, {"jobs": 1.5}, {"threads": True}])
def test_jobs_and_threads_are_validated(tmp_path, arg):
    with pytest.raises(ValueError, match=next(iter(arg))):
        book.build(tmp_path, "quick", **arg)


def test_parameter_table_lists_every_parameter_with_both_profiles():
    import papermill

    from cca_lib.book.pages import show_value

    for name in book.toc_chapters(ROOT / "_toc.yml"):
        inferred = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
        table = book.parameter_table(name, {"seed": 123}, root=ROOT)
        assert list(table.index) == list(inferred), name
        assert {"meaning", "paper", "quick", "full", "this run"} <= set(table.columns)
        assert not table["meaning"].str.contains(r"\(paper:").any(), name
        config = getattr(book.chapter_module(name), "Config", None)
        if config is not None:  # the quick profile is the Config defaults
            for param, value in config.defaults().items():
                assert table.loc[param, "quick"] == show_value(value), (name, param)
        if "seed" in table.index:
            assert table.loc["seed", "this run"] == "123"
    table = book.parameter_table("signal_noise", root=ROOT)
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


def test_schedule_order_respects_dependencies_then_measured_time():
    after = {"a": [], "b": [], "c": ["a"], "d": ["zzz"]}
    seconds = {"a": 1.0, "b": 50.0, "c": 99.0, "d": 5.0}
    assert schedule.schedule_order(["a", "b", "c", "d"], after, seconds) == ["b", "d", "a", "c"]
    assert schedule.schedule_order(["c"], after, seconds) == ["c"]  # a not selected: c may start
    # not measured yet: before the measured ones, in book order; nothing measured: book order
    assert schedule.schedule_order(["a", "b", "c", "d"], after, {"b": 50.0}) == \
        ["a", "c", "d", "b"]
    assert schedule.schedule_order(["d", "a", "b", "c"], after, {}) == ["d", "a", "b", "c"]
    cyc = {"x": ["y"], "y": ["x"]}
    with pytest.raises(ValueError, match="cycle"):
        schedule.schedule_order(["x", "y"], cyc, {})


def test_book_chapters_have_valid_scheduling_metadata():
    chapters = book.toc_chapters(ROOT / "_toc.yml")
    after = {name: schedule.chapter_after(ROOT, name) for name in chapters}
    assert set(schedule.schedule_order(chapters, after, {})) == set(chapters)
    assert all(set(a) <= set(chapters) for a in after.values())


def test_chapter_metadata_holds_no_hand_written_cost(tmp_path):
    import json

    _chapter(tmp_path, "old", "y = 1")
    path = tmp_path / "notebooks" / "old.ipynb"
    nb = json.loads(path.read_text())
    nb["metadata"]["cca_book"] = {"after": [], "cost": 85}
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match=r"cca_book may hold only \['after'\], got \['cost'\]"):
        schedule.chapter_after(tmp_path, "old")
    nb["metadata"]["cca_book"] = {"after": "first"}
    path.write_text(json.dumps(nb))
    with pytest.raises(ValueError, match="list of chapter names"):
        schedule.chapter_after(tmp_path, "old")


def test_chapter_times_are_kept_per_profile_and_merged(tmp_path):
    path = tmp_path / "times.json"
    assert schedule.load_times(path, "quick") == {}
    schedule.record_times(path, "quick", {"a": 12.5, "b": 3})
    schedule.record_times(path, "full", {"a": 600.0})
    schedule.record_times(path, "quick", {"b": 4.25})
    assert schedule.load_times(path, "quick") == {"a": 12.5, "b": 4.25}
    assert schedule.load_times(path, "full") == {"a": 600.0}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    for bad in (-1.0, float("nan"), True, "3"):
        with pytest.raises(ValueError, match="seconds of chapter 'a'"):
            schedule.record_times(path, "quick", {"a": bad})
    assert schedule.load_times(path, "quick") == {"a": 12.5, "b": 4.25}


@pytest.mark.parametrize("text", ["{not json", '{"quick": {"a": "slow"}}', "[1, 2]"])
def test_unreadable_chapter_times_are_ignored_with_a_warning(tmp_path, text):
    path = tmp_path / "times.json"
    path.write_text(text)
    with pytest.warns(UserWarning, match="chapter times"):
        assert schedule.load_times(path, "quick") == {}
    with pytest.warns(UserWarning, match="chapter times"):
        schedule.record_times(path, "quick", {"a": 1.0})  # the next build writes a good file
    assert schedule.load_times(path, "quick") == {"a": 1.0}


def test_times_file_is_in_the_data_folder(tmp_path):
    from cca_lib._paths import data_dir

    assert schedule.times_path() == data_dir() / schedule.TIMES_FILE
    assert data_dir() == tmp_path / "data"  # the fixture's folder, not the checkout's


def test_build_records_the_measured_times_and_uses_them(tmp_path, capfd):
    (tmp_path / "_toc.yml").write_text(
        "root: intro\nchapters:\n  - file: book/executed/quick1\n"
        "  - file: book/executed/slow\n  - file: book/executed/bad\n")
    _chapter(tmp_path, "quick1", "y = 1")
    _chapter(tmp_path, "slow", "import time\ntime.sleep(1.5)")
    _chapter(tmp_path, "bad", "raise RuntimeError('boom')")
    times = tmp_path / "times.json"
    with pytest.raises(SystemExit, match="failed: bad"):
        book.build(tmp_path, "quick", jobs=1, times=times)
    seconds = schedule.load_times(times, "quick")
    assert set(seconds) == {"quick1", "slow"}  # a failed chapter's time is not recorded
    assert seconds["slow"] > seconds["quick1"] and seconds["slow"] >= 1.5
    assert schedule.load_times(times, "full") == {}
    capfd.readouterr()
    (tmp_path / "notebooks" / "bad.ipynb").unlink()
    _chapter(tmp_path, "bad", "y = 2")
    book.build(tmp_path, "quick", jobs=1, times=times)
    started = [line.split()[-1] for line in capfd.readouterr().out.splitlines()
               if "started:" in line]
    assert started == ["bad", "slow", "quick1"]  # unmeasured first, then the longest
    assert set(schedule.load_times(times, "quick")) == {"quick1", "slow", "bad"}


def test_build_records_times_in_the_data_folder_by_default(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: intro\nchapters:\n  - file: book/executed/a\n")
    _chapter(tmp_path, "a", "y = 1")
    book.build(tmp_path, "quick", jobs=1)
    assert set(schedule.load_times(schedule.times_path(), "quick")) == {"a"}


def test_a_chapter_waits_for_the_one_it_reuses(tmp_path):
    import json

    (tmp_path / "_toc.yml").write_text(
        "root: intro\nchapters:\n  - file: book/executed/late\n  - file: book/executed/first\n")
    stamp = "import time, pathlib\npathlib.Path('{}').write_text(str(time.time()))\n"
    _chapter(tmp_path, "first", "import time\ntime.sleep(1)\n" + stamp.format("first.t"))
    _chapter(tmp_path, "late", stamp.format("late.t"))
    nbs = tmp_path / "notebooks"
    nb = json.loads((nbs / "late.ipynb").read_text())
    nb["metadata"]["cca_book"] = {"after": ["first"]}
    (nbs / "late.ipynb").write_text(json.dumps(nb))
    # "late" measured as the longest: it would start first, were it not waiting for "first"
    schedule.record_times(schedule.times_path(), "quick", {"late": 100.0, "first": 1.0})
    book.build(tmp_path, "quick", jobs=2)
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
        book.build(tmp_path, "quick", jobs=2)
    assert "SKIPPED user: base failed" in capsys.readouterr().err
    assert not (tmp_path / "book" / "executed" / "user.ipynb").exists()


def test_nothing_in_the_library_imports_the_book_tooling():
    """Every module of cca_lib outside cca_lib/book/ works without the book: none imports it
    (absolute or relative imports, at any depth of the module)."""
    import ast

    package = ROOT / "cca_lib"
    modules = [p for p in package.rglob("*.py") if (package / "book") not in p.parents]
    assert len(modules) > 10
    offenders = []
    for path in modules:
        parts = path.relative_to(ROOT).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        package_parts = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package_parts[: len(package_parts) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            if any(n == "cca_lib.book" or n.startswith("cca_lib.book.") for n in names):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"modules outside cca_lib/book/ import it: {offenders}"
