"""The reproduction scorecard: which of the paper's claims hold at the scale we ran.

Each chapter module's ``check(result)`` returns the claims it tested as :class:`Claim` objects:
a status (decided with :func:`status`), the criteria behind it as :class:`Criterion` rows
(criterion, threshold, measured value, met) and a sentence with the numbers compared. The
chapter's check cell calls :func:`record` with them and shows :func:`evidence_table`. When the
book is built (:mod:`cca_lib.bookbuild`) the records are written as JSON and
:func:`write_page` renders them into the scorecard page. Nothing on that page is typed by
hand: a claim no chapter has checked shows as "not run".

Outside a book build (a reader running a notebook, nbval in CI) :func:`record` only validates
its input and returns it; it writes nothing.
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

RESULTS_ENV = "CCA_BOOK_RESULTS_DIR"
PROFILE_ENV = "CCA_BOOK_PROFILE"

STATUSES = ("holds", "partly", "does not hold")

#: The paper's claims (Morcos, Raghu & Bengio 2018), in our words; see the book's introduction.
#: Ids starting with "K" are cross-checks from other work, labelled as such in their text.
CLAIMS: dict[str, str] = {
    "C1": "As the fraction of shared signal falls, mean CCA underestimates the shared structure "
          "while projection-weighted CCA stays robust (toy data, Fig. 2).",
    "C2": "Many CCA coefficients keep changing after accuracy has converged: the unconverged "
          "part of a representation is noise (Fig. 1a-c).",
    "C3": "Directions that converge early (signal) stay stable through training, the least "
          "converged ones (noise) decorrelate (Fig. 1d-f).",
    "C4": "Generalizing networks converge to more similar representations than memorizing ones, "
          "in later layers; memorizing pairs are as far apart as memorizing-generalizing pairs "
          "(Fig. 3, A10).",
    "C5": "Wider networks converge to more similar solutions (Fig. 4a).",
    "C6": "Test accuracy is strongly anti-correlated with within-group distance, while "
          "distances at initialization barely change with width (Fig. 4b).",
    "C7": "Networks differing only in learning rate converge to distinct clusters of "
          "representations with similar accuracy (Fig. 5).",
    "C8": "RNNs converge bottom-up during training, shown more clearly by PWCCA than by mean CCA "
          "(Fig. 6, A8).",
    "C9": "RNN hidden states are not linearly similar across timesteps until late in the "
          "sequence (App. A.3).",
    "K1": "Cross-check from Kornblith et al. (2019), not a claim of the paper: for a layer of one "
          "network, the most similar layer of a network that differs only in its seed is the "
          "same layer by linear CKA, far more often than by mean CCA, SVCCA or PWCCA "
          "(their Table 2).",
}


def status(holds: bool, partly: bool = False) -> str:
    """The verdict of a claim: "holds" if ``holds``, else "partly" if ``partly``, else
    "does not hold"."""
    for name, value in (("holds", holds), ("partly", partly)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return "holds" if holds else "partly" if partly else "does not hold"


def yes_no(flag: bool) -> str:
    """A bool in plain words, for evidence sentences."""
    return "yes" if flag else "no"


@dataclass(frozen=True)
class Criterion:
    """One row of a claim's evidence: what was measured, the rule it was held to, and whether
    it met it (``None``: reported beside the criteria, does not decide the status)."""

    name: str  #: what is measured, in plain words
    threshold: str  #: the rule, in plain words with its numbers (e.g. "at least 0.25")
    measured: float | int | str  #: the measured value
    passed: bool | None  #: whether the measured value met the rule

    def __post_init__(self) -> None:
        for arg in ("name", "threshold"):
            if not isinstance(getattr(self, arg), str):
                raise TypeError(f"criterion {arg} must be a str, got "
                                f"{type(getattr(self, arg)).__name__}")
        if not self.name.strip():
            raise ValueError("criterion name must say what is measured")
        if self.passed is not None and not isinstance(self.passed, bool):
            raise TypeError(f"criterion {self.name!r}: passed must be a bool or None, got "
                            f"{type(self.passed).__name__} {self.passed!r}")
        m = self.measured
        if isinstance(m, bool) or not isinstance(m, (str, numbers.Real)):
            raise TypeError(f"criterion {self.name!r}: measured must be a number or a str, got "
                            f"{type(m).__name__} {m!r}")
        if isinstance(m, numbers.Integral):  # numpy scalars become plain numbers (JSON)
            object.__setattr__(self, "measured", int(m))
        elif isinstance(m, numbers.Real):
            object.__setattr__(self, "measured", float(m))


@dataclass(frozen=True)
class Claim:
    """One paper claim as tested by one chapter."""

    id: str  #: "C1" .. "C9", or a cross-check from other work ("K1"); a key of CLAIMS
    status: str  #: one of STATUSES
    evidence: str  #: the numbers compared, in a sentence
    figure: str = ""  #: where in the chapter to look (e.g. "Figure 1")
    #: the criteria behind the status, one row each
    criteria: tuple[Criterion, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.id not in CLAIMS:
            raise ValueError(f"claim id must be one of {sorted(CLAIMS)}, got {self.id!r}")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not self.evidence.strip():
            raise ValueError(f"claim {self.id}: evidence must state the numbers compared")
        if not isinstance(self.criteria, (tuple, list)) or not all(
                isinstance(c, Criterion) for c in self.criteria):
            raise TypeError(f"claim {self.id}: criteria must be a tuple of Criterion, got "
                            f"{self.criteria!r}")
        object.__setattr__(self, "criteria", tuple(self.criteria))


def record(chapter: str, claims: list[Claim], *, title: str = "") -> list[Claim]:
    """Record ``claims`` for ``chapter`` (written only during a book build); return them."""
    if not claims:
        raise ValueError("record() needs at least one Claim")
    target = os.environ.get(RESULTS_ENV)
    if target:
        out = Path(target)
        out.mkdir(parents=True, exist_ok=True)
        payload = {
            "chapter": chapter,
            "title": title or chapter,
            "profile": os.environ.get(PROFILE_ENV, "unknown"),
            "claims": [asdict(c) for c in claims],
        }
        _atomic_write(out / f"{chapter}.json", json.dumps(payload, indent=2))
    return claims


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_records(results_dir: Path) -> list[dict]:
    """All chapter records in ``results_dir`` (sorted by chapter name)."""
    if not results_dir.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]


# plain words: emoji need a font that not every reader (or headless browser) has
_BADGE = {"holds": "**holds**", "partly": "*partly*", "does not hold": "**does not hold**"}


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


def render(records: list[dict], *, profile: str, chapters: list[str] | None = None) -> str:
    """The scorecard page as MyST markdown."""
    order = {name: i for i, name in enumerate(chapters or [])}
    by_claim: dict[str, list[tuple[dict, dict]]] = {cid: [] for cid in CLAIMS}
    for rec in sorted(records, key=lambda r: order.get(r["chapter"], len(order))):
        for claim in rec["claims"]:
            by_claim[claim["id"]].append((rec, claim))
    profiles = sorted({rec["profile"] for rec in records}) or [profile]
    lines = [
        "# Reproduction scorecard",
        "",
        "Each row is one claim of Morcos, Raghu & Bengio (2018), as listed in the introduction.",
        "The status and the numbers are written by the chapters' check cells when the book is",
        "built; nothing here is typed by hand. A claim can hold at the paper's scale and not at",
        "ours: the chapter then says so and shows the numbers.",
        "",
        f"**Profile of this build:** `{', '.join(profiles)}`",
        "",
        "| claim | the paper says | chapter | our numbers | status |",
        "|---|---|---|---|---|",
    ]
    for cid, text in CLAIMS.items():
        rows = by_claim[cid]
        if not rows:
            lines.append(f"| {cid} | {text} | — | not run in this build | ⚪ not run |")
            continue
        for rec, claim in rows:
            where = f"[{rec['title']}](../executed/{rec['chapter']}.ipynb)"
            if claim.get("figure"):
                where += f" ({claim['figure']})"
            evidence = claim["evidence"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {cid} | {text} | {where} | {evidence} | {_BADGE[claim['status']]} |")
    lines.append("")
    return "\n".join(lines)


def write_page(results_dir: Path, page: Path, *, profile: str,
               chapters: list[str] | None = None) -> Path:
    """Render all records in ``results_dir`` into ``page`` (atomically); return its path."""
    page.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(page, render(load_records(results_dir), profile=profile, chapters=chapters))
    return page
