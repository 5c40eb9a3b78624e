"""The reproduction scorecard page: which of the paper's claims hold at the scale we ran.

A chapter's check cell passes the :class:`~cca_lib.claims.Claim` objects its module's
``check(result)`` returned to :func:`record`. During a book build (:mod:`cca_lib.book.execute`
sets :data:`RESULTS_ENV`) each chapter's claims are written as JSON, and after all chapters ran
:func:`write_page` renders them into the scorecard page. Nothing on that page is typed by hand:
a claim no chapter has checked shows as "not run".

Outside a book build (a reader running a notebook, nbval in CI) :func:`record` only validates
its input and returns it; it writes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from cca_lib.book._files import atomic_write
from cca_lib.claims import CLAIMS, PAPER_FIGURES, Claim

RESULTS_ENV = "CCA_BOOK_RESULTS_DIR"
PROFILE_ENV = "CCA_BOOK_PROFILE"


def record(chapter: str, claims: list[Claim], *, title: str = "") -> list[Claim]:
    """Record ``claims`` for ``chapter`` (written only during a book build); return them."""
    if not claims:
        raise ValueError("record() needs at least one Claim")
    bad = [c for c in claims if not isinstance(c, Claim)]
    if bad:
        raise TypeError(f"record() takes Claim objects, got {type(bad[0]).__name__} {bad[0]!r}")
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
        atomic_write(out / f"{chapter}.json", json.dumps(payload, indent=2))
    return claims


def load_records(results_dir: Path) -> list[dict]:
    """All chapter records in ``results_dir`` (sorted by chapter name)."""
    if not results_dir.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))]


# plain words: emoji need a font that not every reader (or headless browser) has
_BADGE = {"holds": "**holds**", "partly": "*partly*", "does not hold": "**does not hold**",
          "not testable": "*not testable*"}

_PROFILE_NOTE = {
    "quick": "This build used the **quick** profile: small networks and few seeds, chosen so "
             "that the whole book runs in minutes for continuous integration and local checks. "
             "Verdicts at this scale are the least powered; the full profile tests the same "
             "criteria on more and longer-trained networks.",
    "full": "This build used the **full** profile: more seeds, wider sweeps and longer "
            "training than the quick profile, still far below the paper's scale (see the "
            "deviations table).",
    "paper": "This build used the **paper** profile: the paper's setups as far as they are "
             "stated.",
}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or "—"


def overall_status(statuses: list[str]) -> str:
    """One verdict for a claim tested in several parts: "holds" if every part holds, "not
    testable" if no part was testable, "does not hold" if no testable part holds even partly,
    else "partly" (an untestable part keeps the claim from holding in full)."""
    if not statuses:
        raise ValueError("overall_status needs at least one status")
    if all(st == "holds" for st in statuses):
        return "holds"
    if all(st == "not testable" for st in statuses):
        return "not testable"
    if all(st in ("does not hold", "not testable") for st in statuses):
        return "does not hold"
    return "partly"


def _figure_refs(figure: str) -> str:
    """A claim's figures for the page: each figure name (``fig-...``) as a cross-reference that
    renders as the book's number for it; other text as it is."""
    return ", ".join(f"{{numref}}`{name}`" if name.startswith("fig-") else name
                     for name in (part.strip() for part in figure.split(",")) if name)


def _cka(claim: dict) -> str:
    value = claim.get("cka_agrees")
    return "—" if value is None else "yes" if value else "no"


def _anchor(cid: str, part: str = "") -> str:
    """The target name of one claim's (or one part's) evidence section on the page."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in f"{cid} {part}".strip().lower())
    return "scorecard-" + "-".join(w for w in slug.split("-") if w)


def _details(label: str, anchor: str, items: list[tuple[str, str]]) -> list[str]:
    """One claim's (or part's) evidence section: a target, a heading and a list of fields."""
    lines = [f"({anchor})=", f"### {label}", ""]
    lines += [f"- **{name}:** {value}" for name, value in items]
    return lines + [""]


def render(records: list[dict], *, profile: str, chapters: list[str] | None = None) -> str:
    """The scorecard page as MyST markdown: a compact table with one row per claim (a claim
    tested in several parts gets a row per part and an overall verdict) and a tally; then, per
    claim, what the paper says, its figure and number, ours, whether CKA agrees, the status and
    the evidence in full, with the chapter that tested it (each status in the table links to
    its section); last, the deviations of our setups from the paper's."""
    order = {name: i for i, name in enumerate(chapters or [])}
    by_claim: dict[str, list[tuple[dict, dict]]] = {cid: [] for cid in CLAIMS}
    for rec in sorted(records, key=lambda r: order.get(r["chapter"], len(order))):
        for claim in rec["claims"]:
            by_claim[claim["id"]].append((rec, claim))
    profiles = sorted({rec["profile"] for rec in records}) or [profile]
    lines = [
        "# Reproduction scorecard",
        "",
        "Each row is one claim of Morcos, Raghu & Bengio (2018), as listed in the",
        "[introduction](../intro.md),",
        "with the paper's figure and number beside ours. The status, the numbers and the",
        "intervals are written by the chapters' check cells when the book is built; nothing here",
        "is typed by hand. A claim can hold at the paper's scale and not at ours: the chapter",
        "then says so and shows the numbers. *Not testable* means our setup did not reach what",
        "the test needs (for example, enough training after accuracy converged): it is no",
        "verdict on the claim. *CKA agrees* says whether linear CKA, applied to",
        "the same criteria, gives the same verdict as the PWCCA-based test. Rows whose id starts",
        "with K are cross-checks from other work (labelled as such), not claims of the paper.",
        "Each status links to the claim's evidence below the table: what the paper says, the",
        "numbers our check compared, and the chapter that ran it.",
        "",
        f"**Profile of this build:** `{', '.join(profiles)}`. "
        + " ".join(_PROFILE_NOTE.get(p, "") for p in profiles),
        "",
        "| claim | the paper (figure: number) | ours (95% interval, or range over seeds) "
        "| CKA agrees | status |",
        "|---|---|---|---|---|",
    ]
    details = ["## The evidence, claim by claim", "",
               "Per claim (and per part of a claim tested in several chapters), the paper's",
               "statement and number, ours, and the evidence the chapter's check cell recorded.",
               ""]
    words = ("holds", "partly", "does not hold", "not testable", "not run")
    # the paper's claims and the cross-checks from other work (ids starting with K) apart
    tallies: dict[str, dict[str, int]] = {"paper": dict.fromkeys(words, 0),
                                          "cross": dict.fromkeys(words, 0)}
    for cid, text in CLAIMS.items():
        rows = by_claim[cid]
        tally = tallies["cross" if cid.startswith("K") else "paper"]
        figure = PAPER_FIGURES.get(cid, "—")
        if not rows:
            tally["not run"] += 1
            anchor = _anchor(cid)
            lines.append(f"| {cid} | {figure} | not run in this build | — "
                         f"| [not run]({anchor}) |")
            details += _details(f"{cid}: not run", anchor, [
                ("The paper says", _cell(text)), ("The paper's figure", figure),
                ("Status", "not run in this build (no chapter of this build checked it)")])
            continue
        for rec, claim in rows:
            where = f"[{rec['title']}](../executed/{rec['chapter']}.ipynb)"
            if claim.get("figure"):
                where += ", " + _figure_refs(claim["figure"])
            part = claim.get("part") or ""
            label = cid + (f" ({part})" if part else "")
            anchor = _anchor(cid, part)
            paper_value = _cell(claim.get("paper_value", ""))
            paper = figure if paper_value == "—" else f"{figure}: {paper_value}"
            lines.append(
                f"| {label} | {paper} | {_cell(claim.get('ours', ''))} | {_cka(claim)} | "
                f"[{_BADGE[claim['status']]}]({anchor}) |")
            details += _details(f"{label}: {claim['status']}", anchor, [
                ("The paper says", _cell(text)), ("The paper's figure", figure),
                ("The paper's number", paper_value),
                ("Our number (95% interval, or range over seeds)", _cell(claim.get("ours", ""))),
                ("CKA agrees", _cka(claim)), ("Status", _BADGE[claim["status"]]),
                ("Evidence", _cell(claim["evidence"])), ("Tested in", where)])
        verdict = overall_status([c["status"] for _, c in rows])
        if len(rows) > 1:
            every = "yes" if verdict == "holds" else "no"
            anchor = _anchor(cid, "overall")
            lines.append(f"| {cid} overall | {figure} | all parts of {cid} | | "
                         f"[{_BADGE[verdict]}]({anchor}) |")
            details += _details(f"{cid} overall: {verdict}", anchor, [
                ("Status", _BADGE[verdict]),
                ("Rule", f"holds if every part of {cid} holds, not testable if no part was "
                         "testable, does not hold if no testable part holds even partly, partly "
                         "otherwise"),
                ("Every part holds", every)])
        tally[verdict] += 1
    def counted(tally: dict[str, int]) -> str:
        return ", ".join(f"{n} {word}" for word, n in tally.items())

    lines += ["", f"**Tally:** {counted(tallies['paper'])} (the paper's claims)."]
    if any(tallies["cross"].values()):
        lines += [f"Cross-checks from other work, apart: {counted(tallies['cross'])}."]
    lines += [""]
    lines += details
    setup_rows = [(cid, claim) for cid in CLAIMS for _, claim in by_claim[cid]
                  if claim.get("setup")]
    if setup_rows:
        lines += ["## How our setups differ from the paper's", "",
                  "Per claim, the paper's setup against the one this build ran.", "",
                  "| claim | aspect | the paper | this build |", "|---|---|---|---|"]
        for cid, claim in setup_rows:
            label = cid + (f" ({claim['part']})" if claim.get("part") else "")
            for aspect, paper, ours in claim["setup"]:
                lines.append(f"| {label} | {aspect} | {_cell(paper)} | {_cell(ours)} |")
        lines.append("")
    return "\n".join(lines)


def write_page(results_dir: Path, page: Path, *, profile: str,
               chapters: list[str] | None = None) -> Path:
    """Render all records in ``results_dir`` into ``page`` (atomically); return its path."""
    page.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(page, render(load_records(results_dir), profile=profile, chapters=chapters))
    return page
