"""Where the book's launch buttons point, and the chapters' install cell.

The repository's address is one setting, ``repository.url`` (and ``repository.branch``) in
``_config.yml``: the theme's repository, issue, Binder and Colab buttons read it, this module
writes it into every chapter's install cell, and ``tests/test_launch.py`` checks that the README
and the notebooks agree with it.

A chapter page is rendered from its executed copy ``book/executed/<name>.ipynb``, which is build
output (ignored by git); its launch buttons must open the source ``notebooks/<name>.ipynb``,
which is in the repository (:func:`source_notebook`, used by ``cca_book_sphinx``).

Every chapter's first code cell, before the parameters cell, is :func:`install_cell_source`:
where ``cca_lib`` cannot be imported (Colab, a bare Jupyter) it clones the repository, installs
the pinned requirements of ``binder/requirements.txt`` (the CPU build of torch) and the library;
in a checkout, in Binder (whose ``binder/postBuild`` installs the library) and under the tests it
does nothing. Rewrite the cells after changing the setting::

    python book/_ext/launch.py          # from the repository root
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXECUTED = "book/executed/"
NOTEBOOKS = "notebooks/"
#: The tag of the install cell: the book removes the cell (input and output) from its pages.
INSTALL_TAG = "remove-cell"
#: The first line of the install cell, how a notebook's install cell is recognised.
INSTALL_MARK = "# Install cca_lib where it is missing"
INSTALL_ID = "install-cca-lib"


def repository(root: Path = ROOT) -> tuple[str, str]:
    """``(url, branch)`` of the repository, from ``_config.yml``'s ``repository`` section."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text())
    repo = config.get("repository") or {}
    url, branch = repo.get("url"), repo.get("branch")
    if not (isinstance(url, str) and url.startswith("https://github.com/")
            and len(url.removeprefix("https://github.com/").strip("/").split("/")) == 2):
        raise ValueError(f"_config.yml repository.url must be https://github.com/<org>/<repo>, "
                         f"got {url!r}")
    if not (isinstance(branch, str) and branch):
        raise ValueError(f"_config.yml repository.branch must name a branch, got {branch!r}")
    return url.rstrip("/"), branch


def source_notebook(pagename: str) -> str | None:
    """The tracked notebook a page's launch buttons should open, relative to the repository
    root: ``notebooks/<name>.ipynb`` for the executed chapter ``book/executed/<name>``; None for
    any other page."""
    if not pagename.startswith(EXECUTED):
        return None
    name = pagename[len(EXECUTED):].removesuffix(".ipynb")
    if not name or "/" in name:
        return None
    return f"{NOTEBOOKS}{name}.ipynb"


def install_cell_source(url: str, branch: str) -> str:
    """The code of the install cell for the repository at ``url``, branch ``branch``."""
    return f'''{INSTALL_MARK} (Colab, a bare Jupyter): clone the repository and install
# its pinned requirements (the CPU build of torch) and the library. In a checkout of the
# repository, in Binder and under the tests cca_lib is importable and this cell does nothing.
import importlib.util

if importlib.util.find_spec("cca_lib") is None:
    import subprocess
    import sys
    from pathlib import Path

    repo, branch = "{url}", "{branch}"
    clone = Path.home() / "cca-book"
    if not (clone / "pyproject.toml").is_file():
        subprocess.run(["git", "clone", "--depth", "1", "--branch", branch, repo, str(clone)],
                       check=True)
    loaded = sorted({{"numpy", "scipy", "pandas", "matplotlib", "torch"}} & set(sys.modules))
    pip = [sys.executable, "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(clone / "binder" / "requirements.txt")], check=True)
    subprocess.run([*pip, "--no-deps", "-e", str(clone)], check=True)
    sys.path.insert(0, str(clone))  # the editable install is seen from the next start on
    if loaded:
        raise SystemExit(f"installed cca_lib, but {{', '.join(loaded)}} were already imported "
                         "in an older version: restart the kernel (Colab: Runtime > Restart "
                         "session) and run the notebook again")
'''


def install_cell(url: str, branch: str):
    """The install cell as an nbformat code cell, tagged :data:`INSTALL_TAG`."""
    import nbformat

    cell = nbformat.v4.new_code_cell(install_cell_source(url, branch))
    cell.metadata["tags"] = [INSTALL_TAG]
    cell["id"] = INSTALL_ID
    return cell


def is_install_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and cell.get("source", "").startswith(INSTALL_MARK)


def parameters_index(nb) -> int:
    """Index of the notebook's cell tagged ``parameters``."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise ValueError("the notebook has no cell tagged 'parameters'")


def write_install_cells(root: Path = ROOT) -> list[Path]:
    """Put the current install cell right before the parameters cell of every notebook in
    ``notebooks/`` (replacing an older one); return the notebooks that changed."""
    import nbformat

    url, branch = repository(root)
    changed = []
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        before = [dict(c) for c in nb.cells]
        nb.cells = [c for c in nb.cells if not is_install_cell(c)]
        nb.cells.insert(parameters_index(nb), install_cell(url, branch))
        if [dict(c) for c in nb.cells] != before:
            nbformat.write(nb, path)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for p in write_install_cells(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT):
        print(f"rewrote the install cell of {p}")
