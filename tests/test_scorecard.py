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
    rows = [line for line in text.splitlines() if line.startswith(("| C", "| K"))]
    assert len(rows) == len(scorecard.CLAIMS)  # one row per claim, run or not
    assert "a \\| b" in text  # table cells escape pipes
    assert "**holds**" in rows[0] and "*partly*" in rows[7]
    assert sum("not run" in r for r in rows) == len(scorecard.CLAIMS) - 2
    assert "`quick`" in text


def test_record_needs_claims():
    with pytest.raises(ValueError, match="at least one"):
        scorecard.record("ch", [])


def test_status_is_the_one_ternary():
    assert scorecard.status(True) == "holds"
    assert scorecard.status(True, False) == "holds"
    assert scorecard.status(False, True) == "partly"
    assert scorecard.status(False) == scorecard.status(False, False) == "does not hold"
    with pytest.raises(TypeError, match="holds must be a bool"):
        scorecard.status(1)  # a count is not a verdict
    with pytest.raises(TypeError, match="partly must be a bool"):
        scorecard.status(False, None)


def test_criterion_validates_and_stores_plain_numbers():
    import numpy as np

    c = scorecard.Criterion("share below 0.9", "at least 0.25", np.float64(0.3), True)
    assert type(c.measured) is float
    assert type(scorecard.Criterion("n", "all", np.int64(6), True).measured) is int
    assert scorecard.Criterion("spread", "", "0.1/0.2", None).passed is None
    with pytest.raises(TypeError, match="passed must be a bool"):
        scorecard.Criterion("x", "at least 1", 2.0, np.bool_(True))
    with pytest.raises(TypeError, match="measured must be a number or a str"):
        scorecard.Criterion("x", "at least 1", True, True)
    with pytest.raises(ValueError, match="criterion name"):
        scorecard.Criterion(" ", "at least 1", 2.0, True)
    with pytest.raises(TypeError, match="criteria must be a tuple of Criterion"):
        scorecard.Claim("C1", "holds", "1 > 0", criteria=[("x", "y", 1, True)])


def test_evidence_table_is_plain_words(tmp_path, monkeypatch):
    rows = (scorecard.Criterion("PWCCA's lowest mean", "above 0.9", 0.4712, False),
            scorecard.Criterion("p-value", "below 0.01", 2.9e-47, True),
            scorecard.Criterion("accuracy spread", "similar", 0.171, None))
    claim = scorecard.Claim("C1", "partly", "numbers", criteria=rows)
    table = scorecard.evidence_table(
        [claim], sanity=(scorecard.Criterion("exact", "below 1e-09", 0, True),))
    assert list(table.columns) == ["threshold", "measured", "met"]
    assert list(table["measured"]) == ["0.471", "2.9e-47", "0.171", "0"]
    assert list(table["met"]) == ["no", "yes", "reported only", "yes"]
    assert table.index[0] == ("C1: partly", "PWCCA's lowest mean")
    assert table.index[-1][0] == "must always hold"
    monkeypatch.setenv(scorecard.RESULTS_ENV, str(tmp_path))
    scorecard.record("toy", [claim])
    saved = json.loads((tmp_path / "toy.json").read_text())["claims"][0]["criteria"]
    assert saved[0] == {"name": "PWCCA's lowest mean", "threshold": "above 0.9",
                        "measured": 0.4712, "passed": False}
