"""Launching a chapter outside a checkout: the install cell, Binder's configuration, and one
repository address for the buttons, the install cells and the README (``book/_ext/launch.py``).

The launch URLs of the built pages are checked in ``tests/browser/test_built_book.py``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_launch():
    spec = importlib.util.spec_from_file_location("cca_book_launch", ROOT / "book/_ext/launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


launch = _load_launch()


def _chapters() -> list[str]:
    from cca_lib.book import toc_chapters

    return toc_chapters(ROOT / "_toc.yml")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, _, version = line.partition("==")
            assert version, f"{path}: {line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def test_every_chapter_has_the_current_install_cell_before_its_parameters():
    import nbformat

    url, branch = launch.repository()
    expected = launch.install_cell_source(url, branch)
    for name in _chapters():
        nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        found = [i for i, c in enumerate(nb.cells) if launch.is_install_cell(c)]
        assert len(found) == 1, f"{name}: expected one install cell, found {len(found)}"
        i = found[0]
        assert i == launch.parameters_index(nb) - 1, f"{name}: install cell not right before " \
                                                     "the parameters cell"
        assert all(c.cell_type == "markdown" for c in nb.cells[:i]), \
            f"{name}: the install cell must be the first code cell"
        cell = nb.cells[i]
        assert cell.source == expected, (f"{name}: install cell out of date with _config.yml's "
                                         "repository; run `python book/_ext/launch.py`")
        assert launch.INSTALL_TAG in cell.metadata.get("tags", []), \
            f"{name}: install cell not tagged {launch.INSTALL_TAG}"


def _run_cell(monkeypatch, tmp_path, *, missing: bool):
    """Execute the install cell's code with cca_lib importable or not; return the commands it
    ran (none is really run) and the message it exited with (None if it did not exit)."""
    calls: list[list[str]] = []

    def fake_run(cmd, check=False, **kwargs):
        assert check, "the install cell must stop when a command fails"
        calls.append([str(c) for c in cmd])
        return subprocess.CompletedProcess(cmd, 0)

    real_find_spec = importlib.util.find_spec
    if missing:
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a:
                            None if name == "cca_lib" else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    url, branch = launch.repository()
    try:
        exec(compile(launch.install_cell_source(url, branch), "<install cell>", "exec"), {})
    except SystemExit as exc:
        return calls, str(exc)
    return calls, None


def test_install_cell_does_nothing_where_cca_lib_is_importable(monkeypatch, tmp_path):
    before = list(sys.path)
    calls, exited = _run_cell(monkeypatch, tmp_path, missing=False)
    assert calls == [] and exited is None
    assert sys.path == before
    assert not (tmp_path / "cca-book").exists()


def test_install_cell_clones_and_installs_where_cca_lib_is_missing(monkeypatch, tmp_path):
    url, branch = launch.repository()
    clone = tmp_path / "cca-book"
    calls, exited = _run_cell(monkeypatch, tmp_path, missing=True)
    assert calls[0] == ["git", "clone", "--depth", "1", "--branch", branch, url, str(clone)]
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    assert calls[1] == [*pip, "-r", str(clone / "binder" / "requirements.txt")]
    assert calls[2] == [*pip, "--no-deps", "-e", str(clone)]
    assert len(calls) == 3
    assert sys.path[0] == str(clone)
    # numpy is imported in this process, as in a kernel that imported it before the cell ran:
    # the cell installs, then asks for a restart rather than run on mixed versions
    assert exited is not None and "restart the kernel" in exited and "numpy" in exited


def test_install_cell_reuses_an_existing_clone(monkeypatch, tmp_path):
    (tmp_path / "cca-book").mkdir()
    (tmp_path / "cca-book" / "pyproject.toml").write_text("")
    calls, _ = _run_cell(monkeypatch, tmp_path, missing=True)
    assert [c[0] for c in calls] == [sys.executable, sys.executable]


def test_write_install_cells_is_idempotent_and_replaces_an_old_cell(tmp_path):
    import shutil

    import nbformat

    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("x = 1  # a parameter")
    params.metadata["tags"] = ["parameters"]
    stale = launch.install_cell("https://github.com/someone/else", "dev")
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), stale, params]
    nbformat.write(nb, tmp_path / "notebooks" / "a.ipynb")
    assert launch.write_install_cells(tmp_path) == [tmp_path / "notebooks" / "a.ipynb"]
    again = nbformat.read(tmp_path / "notebooks" / "a.ipynb", as_version=4)
    assert [c.cell_type for c in again.cells] == ["markdown", "code", "code"]
    assert again.cells[1].source == launch.install_cell_source(*launch.repository())
    assert launch.write_install_cells(tmp_path) == []


def test_repository_setting_is_checked(tmp_path):
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://gitlab.com/a/b\n"
                                          "  branch: main\n")
    with pytest.raises(ValueError, match="repository.url"):
        launch.repository(tmp_path)
    (tmp_path / "_config.yml").write_text("repository:\n  url: https://github.com/a/b\n")
    with pytest.raises(ValueError, match="repository.branch"):
        launch.repository(tmp_path)


def test_source_notebook_maps_executed_chapters_only():
    assert launch.source_notebook("book/executed/method") == "notebooks/method.ipynb"
    assert launch.source_notebook("book/intro") is None
    assert launch.source_notebook("book/executed/results/x/y") is None


def test_binder_installs_the_pinned_cpu_environment_and_the_library():
    binder = ROOT / "binder"
    req = (binder / "requirements.txt").read_text()
    assert re.search(r"^--extra-index-url https://download\.pytorch\.org/whl/cpu\s*$", req, re.M)
    pins, root_pins = _pins(binder / "requirements.txt"), _pins(ROOT / "requirements.txt")
    for name, version in pins.items():
        assert root_pins.get(name) == version, (f"binder/requirements.txt pins {name}=={version}, "
                                                f"requirements.txt {root_pins.get(name)}")
    for needed in ("torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "pyyaml",
                   "papermill"):
        assert needed in pins, f"binder/requirements.txt does not install {needed}"
    post = binder / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable"
    assert re.search(r"pip install .*--no-deps -e \.\s*$", post.read_text(), re.M)
    runtime = (binder / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime)
    pyproject = (ROOT / "pyproject.toml").read_text()
    lowest = re.search(r'^requires-python = ">=(\d+)\.(\d+)"', pyproject, re.M)
    assert lowest, "pyproject.toml: requires-python is not of the form >=3.x"
    version = tuple(int(v) for v in runtime.removeprefix("python-").split("."))
    assert version >= (int(lowest[1]), int(lowest[2]))


def test_readme_links_use_the_configured_repository():
    url, branch = launch.repository()
    readme = (ROOT / "README.md").read_text()
    org_repo = url.removeprefix("https://github.com/")
    github = re.findall(r"https://github\.com/([\w.-]+/[\w.-]+)", readme)
    binder = re.findall(r"https://mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/([\w.-]+)", readme)
    colab = re.findall(r"https://colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/"
                       r"([\w.-]+)/([\w./-]+)", readme)
    assert github and binder and colab, "README must link the repository, Binder and Colab"
    assert set(github) == {org_repo}
    assert set(binder) == {(org_repo, branch)}
    assert {(r, b) for r, b, _ in colab} == {(org_repo, branch)}
    for _, _, path in colab:
        assert (ROOT / path).is_file(), f"README's Colab link names {path}, not in the checkout"
