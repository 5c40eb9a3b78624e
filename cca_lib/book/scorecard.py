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
from cca_lib.claims import CLAIMS, Claim

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
_BADGE = {"holds": "**holds**", "partly": "*partly*", "does not hold": "**does not hold**"}


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
    atomic_write(page, render(load_records(results_dir), profile=profile, chapters=chapters))
    return page
