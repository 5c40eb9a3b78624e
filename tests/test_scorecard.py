"""The scorecard records claims only during a book build and renders every claim."""

import json

import pytest

from cca_lib import scorecard


def test_claim_rejects_unknown_id_status_and_empty_evidence():
    with pytest.raises(ValueError, match="claim id"):
        scorecard.Claim(id="C10", status="holds", evidence="x")
    with pytest.raises(ValueError, match="status"):
        scorecard.Claim(id="C1", status="maybe", evidence="x")
    with pytest.raises(ValueError, match="evidence"):
        scorecard.Claim(id="C1", status="holds", evidence="  ")


def test_record_writes_nothing_outside_a_build(tmp_path, monkeypatch):
    monkeypatch.delenv(scorecard.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    claims = scorecard.record("ch", [scorecard.Claim("C1", "holds", "1 > 0")])
    assert claims[0].id == "C1"
    assert list(tmp_path.iterdir()) == []


def test_record_and_render_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv(scorecard.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(scorecard.PROFILE_ENV, "quick")
    scorecard.record("toy", [scorecard.Claim("C1", "holds", "a | b", figure="Figure 1")],
                     title="Toy")
    scorecard.record("rnn", [scorecard.Claim("C8", "partly", "L1 < L2")], title="RNN")
    data = json.loads((tmp_path / "results" / "toy.json").read_text())
    assert data["profile"] == "quick" and data["claims"][0]["evidence"] == "a | b"
    page = scorecard.write_page(tmp_path / "results", tmp_path / "page.md", profile="quick",
                                chapters=["toy", "rnn"])
    text = page.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| C")]
    assert len(rows) == len(scorecard.CLAIMS)  # one row per claim, run or not
    assert "a \\| b" in text  # table cells escape pipes
    assert "**holds**" in rows[0] and "*partly*" in rows[7]
    assert sum("not run" in r for r in rows) == len(scorecard.CLAIMS) - 2
    assert "`quick`" in text


def test_record_needs_claims():
    with pytest.raises(ValueError, match="at least one"):
        scorecard.record("ch", [])
