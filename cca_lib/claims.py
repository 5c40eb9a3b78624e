"""The paper's claims and how a chapter states its verdict on one.

Each chapter module's ``check(result)`` returns the claims it tested as :class:`Claim` objects:
a status (one of :data:`STATUSES`, decided with :func:`status`), the criteria behind it as
:class:`Criterion` rows (criterion, threshold, measured value, met) and a sentence with the
numbers compared. These types are plain data: showing them on a page and collecting them into
the book's scorecard is the book tooling's job (:mod:`cca_lib.book`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

#: "not testable": the setup could not reach the claim's precondition at this scale (e.g. too
#: little training after convergence to watch what happens after it); not a verdict on the claim.
NOT_TESTABLE = "not testable"
STATUSES = ("holds", "partly", "does not hold", NOT_TESTABLE)

#: The paper's claims (Morcos, Raghu & Bengio 2018), in our words; see the book's introduction.
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


def majority(statuses, *, min_nets: int = 1) -> str:
    """The verdict over several networks (seeds) from their own verdicts: "not testable" if at
    most half of them were testable; else "holds" if more than half hold and there are at least
    ``min_nets`` of them, "partly" if more than half at least partly hold, else "does not hold"
    (an untestable net counts as neither holding nor partly holding)."""
    statuses = list(statuses)
    if not statuses or any(s not in STATUSES for s in statuses):
        raise ValueError(f"statuses must be a non-empty list of {STATUSES}, got {statuses!r}")
    n = len(statuses)
    if sum(s != NOT_TESTABLE for s in statuses) <= n / 2:
        return NOT_TESTABLE
    holds = sum(s == "holds" for s in statuses)
    partly = holds + sum(s == "partly" for s in statuses)
    return status(holds > n / 2 and n >= min_nets, partly > n / 2)


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


#: Where each claim is shown in the paper (Morcos, Raghu & Bengio 2018).
PAPER_FIGURES: dict[str, str] = {
    "C1": "Fig. 2", "C2": "Fig. 1", "C3": "Fig. 1d-f", "C4": "Fig. 3 and A10",
    "C5": "Fig. 4a and A7", "C6": "Fig. 4b", "C7": "Fig. 5", "C8": "Fig. 6 and A8",
    "C9": "App. A.3, Figs. A2-A4", "K1": "Kornblith et al. (2019), Table 2",
}

#: The aspects of a setup that a claim's deviation rows compare (paper against ours).
SETUP_ASPECTS = ("dataset", "architecture", "nets and seeds", "training", "probe inputs")


@dataclass(frozen=True)
class Claim:
    """One paper claim as tested by one chapter (or one part of it, see ``part``)."""

    id: str  #: "C1" .. "C9", or a cross-check from other work ("K1"); a key of CLAIMS
    status: str  #: one of STATUSES
    evidence: str  #: the numbers compared, in a sentence
    #: where in the chapter to look: figure names (e.g. "fig-width-distance"), comma-separated
    figure: str = ""
    #: the criteria behind the status, one row each
    criteria: tuple[Criterion, ...] = field(default=())
    #: which part of a claim tested in several chapters this is (e.g. "CNN", "RNN"), else ""
    part: str = ""
    #: the paper's headline number for the claim, as the paper states it (e.g. "r = -0.96")
    paper_value: str = ""
    #: our headline number with its 95% interval or across-seed range (e.g. "-0.81 [-0.95, -0.52]")
    ours: str = ""
    #: whether linear CKA gives the same verdict as the PWCCA-based criteria (None: not compared)
    cka_agrees: bool | None = None
    #: (aspect, the paper's setup, ours) rows, aspects from SETUP_ASPECTS
    setup: tuple[tuple[str, str, str], ...] = field(default=())

    @property
    def paper_figure(self) -> str:
        """Where the paper shows this claim."""
        return PAPER_FIGURES[self.id]

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
        for arg in ("part", "paper_value", "ours", "figure"):
            if not isinstance(getattr(self, arg), str):
                raise TypeError(f"claim {self.id}: {arg} must be a str, got "
                                f"{type(getattr(self, arg)).__name__}")
        if self.cka_agrees is not None and not isinstance(self.cka_agrees, bool):
            raise TypeError(f"claim {self.id}: cka_agrees must be a bool or None, got "
                            f"{self.cka_agrees!r}")
        rows = tuple(tuple(r) for r in self.setup)
        for r in rows:
            if len(r) != 3 or not all(isinstance(v, str) for v in r) or r[0] not in SETUP_ASPECTS:
                raise ValueError(f"claim {self.id}: each setup row must be (aspect, paper, ours) "
                                 f"strings with aspect one of {SETUP_ASPECTS}, got {r!r}")
        object.__setattr__(self, "setup", rows)
