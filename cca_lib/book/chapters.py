"""The book's chapters and their parameters per profile.

A chapter is listed in ``_toc.yml`` as ``book/executed/<name>``; its source is
``notebooks/<name>.ipynb`` and its library module, when it has one,
``cca_lib.experiments.<name>``. The quick profile is every chapter's defaults (its ``Config``'s,
which the notebook's parameters cell copies); any other profile overrides them with
``params/<profile>/<name>.yaml`` (:func:`load_params`).
"""

from __future__ import annotations

from pathlib import Path

EXECUTED = Path("book") / "executed"
GENERATED = Path("book") / "generated"
PROFILES = ("quick", "full", "paper")
#: Profiles shown as columns of the parameter tables (the paper profile's values are close to
#: the tables' "paper" column, the values the paper states).
TABLE_PROFILES = ("quick", "full")
#: The profile that is every chapter's defaults (no parameter file).
DEFAULT_PROFILE = "quick"


def toc_chapters(toc_path: Path) -> list[str]:
    """Names of the executed chapters listed in ``_toc.yml``, in book order."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text())
    prefix = EXECUTED.as_posix() + "/"
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            entry = node.get("file")
            if isinstance(entry, str) and entry.startswith(prefix):
                found.append(entry[len(prefix) :].removesuffix(".ipynb"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def chapter_module(name: str):
    """The library module of chapter ``name`` (``cca_lib.experiments.<name>``), or None for a
    chapter that has none (it calls the library directly)."""
    import importlib
    import importlib.util

    module = f"cca_lib.experiments.{name}"
    if not name.isidentifier() or importlib.util.find_spec(module) is None:
        return None
    return importlib.import_module(module)


def load_params(root: Path, profile: str, name: str) -> dict:
    """The parameters that profile ``profile`` sets for chapter ``name`` (papermill's overrides).

    The quick profile (:data:`DEFAULT_PROFILE`) is each chapter's defaults (its ``Config``'s,
    copied in the notebook's parameters cell): it sets nothing. Any other profile is
    ``params/<profile>/<name>.yaml``, the values that differ from the defaults (a missing file
    is an error, not a default; an empty one sets nothing). A chapter whose module declares
    ``PARAMS_FROM`` (chapter -> parameter names) also gets those parameters from the other
    chapter's profile, so that both use the same values (e.g. one shared training run); its
    own file may not set them.
    """
    import yaml

    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    params: dict = {}
    if profile != DEFAULT_PROFILE:
        path = root / "params" / profile / f"{name}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"no parameter file for chapter {name!r} in profile {profile!r}: {path}")
        params = yaml.safe_load(path.read_text()) or {}
        if not isinstance(params, dict):
            raise ValueError(f"{path} must hold a mapping of parameter names to values, got "
                             f"{params!r}")
    module = chapter_module(name)
    for other, names in getattr(module, "PARAMS_FROM", {}).items():
        doubled = sorted(set(params) & set(names))
        if doubled:
            raise ValueError(f"params/{profile}/{name}.yaml sets {doubled}, which chapter "
                             f"{name!r} takes from chapter {other!r}: set them in "
                             f"params/{profile}/{other}.yaml")
        shared = load_params(root, profile, other)
        params.update({k: v for k, v in shared.items() if k in names})
    return params
