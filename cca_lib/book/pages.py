"""Helpers for the chapter pages: the evidence table of a check and the parameter table.

Both return a DataFrame for the notebook to display. :func:`parameter_table` reads the book
checkout (``notebooks/``, ``params/``); :func:`evidence_table` needs only the claims.
"""

from __future__ import annotations

import numbers
from pathlib import Path

from cca_lib.book.chapters import TABLE_PROFILES, chapter_module, load_params
from cca_lib.claims import Claim, Criterion

_UNSET = object()


def show_value(value) -> str:
    """A parameter value as the parameter table shows it: its ``repr``, with floats to six
    significant digits (also inside tuples and lists)."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple | list):
        inner = ", ".join(show_value(v) for v in value)
        if isinstance(value, tuple):
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        return f"[{inner}]"
    return repr(value)


def format_value(value: float | int | str) -> str:
    """A measured value as the evidence table shows it: ints as they are, floats to three
    decimals (small ones in scientific notation), strings unchanged."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.3f}"


_MET = {True: "yes", False: "no", None: "reported only"}


def evidence_table(claims: list[Claim], sanity: tuple[Criterion, ...] | list[Criterion] = ()):
    """The criteria behind ``claims`` as a DataFrame for a chapter page: one row per criterion,
    indexed by claim (with its status) and criterion; columns threshold, measured and met. Rows
    of ``sanity`` (what must hold for the comparison to mean anything) come last."""
    import pandas as pd

    rows = []
    groups = [(f"{c.id}: {c.status}", c.criteria) for c in claims]
    if sanity:
        groups.append(("must always hold", tuple(sanity)))
    for label, criteria in groups:
        for c in criteria:
            rows.append({"claim": label, "criterion": c.name, "threshold": c.threshold,
                         "measured": format_value(c.measured), "met": _MET[c.passed]})
    frame = pd.DataFrame(rows, columns=["claim", "criterion", "threshold", "measured", "met"])
    return frame.set_index(["claim", "criterion"])


def parameter_table(name: str, current: dict | None = None, root: Path | None = None):
    """The parameters of chapter ``name`` as a DataFrame, for the chapter to show.

    One row per parameter of the chapter's ``Config`` (:meth:`parameters`): its meaning and the
    paper's value (the field's ``help`` and ``paper`` metadata), the quick profile value (the
    default) and the full profile value, and the value in this run when ``current`` (the
    notebook's ``globals()``) is given. A chapter without a ``Config`` lists its notebook's
    parameters cell as papermill reads it (the meaning is the line's comment).
    """
    import pandas as pd

    from cca_lib._paths import project_root

    root = root if root is not None else project_root()
    if root is None:
        raise FileNotFoundError("parameter_table needs a cca-book checkout (notebooks/, params/)")
    profiles = {p: load_params(root, p, name) for p in TABLE_PROFILES}
    config = getattr(chapter_module(name), "Config", None)
    rows = []
    if config is not None:
        defaults = config.defaults()
        values = {p: {**defaults, **config._convert(profiles[p])} for p in TABLE_PROFILES}
        for param, f in config.parameters().items():
            row = {"parameter": param, "meaning": f.metadata["help"],
                   "paper": f.metadata["paper"]}
            row.update({p: show_value(values[p][param]) for p in TABLE_PROFILES})
            rows.append(row)
    else:
        import papermill

        inferred = papermill.inspect_notebook(str(root / "notebooks" / f"{name}.ipynb"))
        for param, info in inferred.items():
            row = {"parameter": param, "meaning": info["help"].strip(), "paper": ""}
            row.update({p: show_value(profiles[p][param]) if param in profiles[p]
                        else info["default"] for p in TABLE_PROFILES})
            rows.append(row)
    if current is not None:
        for row in rows:
            value = current.get(row["parameter"], _UNSET)
            value = tuple(value) if isinstance(value, list) else value
            row["this run"] = "" if value is _UNSET else show_value(value)
    return pd.DataFrame(rows).set_index("parameter")
