"""The claim types refuse bad input; the scorecard records claims only during a book build
and renders every claim."""

import json

import pytest

from cca_lib import claims as cl
from cca_lib.book import pages, scorecard


def test_claim_rejects_unknown_id_status_and_empty_evidence():
    with pytest.raises(ValueError, match="claim id"):
        cl.Claim(id="C10", status="holds", evidence="x")
    with pytest.raises(ValueError, match="status"):
        cl.Claim(id="C1", status="maybe", evidence="x")
    with pytest.raises(ValueError, match="evidence"):
        cl.Claim(id="C1", status="holds", evidence="  ")


def test_record_writes_nothing_outside_a_build(tmp_path, monkeypatch):
    monkeypatch.delenv(scorecard.RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    claims = scorecard.record("ch", [cl.Claim("C1", "holds", "1 > 0")])
    assert claims[0].id == "C1"
    assert list(tmp_path.iterdir()) == []


def test_record_and_render_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv(scorecard.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(scorecard.PROFILE_ENV, "quick")
    scorecard.record("toy", [cl.Claim("C1", "holds", "a | b", figure="Figure 1")],
                     title="Toy")
    scorecard.record("rnn", [cl.Claim("C8", "partly", "L1 < L2")], title="RNN")
    data = json.loads((tmp_path / "results" / "toy.json").read_text())
    assert data["profile"] == "quick" and data["claims"][0]["evidence"] == "a | b"
    page = scorecard.write_page(tmp_path / "results", tmp_path / "page.md", profile="quick",
                                chapters=["toy", "rnn"])
    text = page.read_text()
    rows = [line for line in text.splitlines() if line.startswith(("| C", "| K"))]
    assert len(rows) == len(cl.CLAIMS)  # one row per claim, run or not
    assert "a \\| b" in text  # table cells escape pipes
    assert "**holds**" in rows[0] and "*partly*" in rows[7]
    assert sum("not run" in r for r in rows) == len(cl.CLAIMS) - 2
    assert "`quick`" in text


def test_record_needs_claims():
    with pytest.raises(ValueError, match="at least one"):
        scorecard.record("ch", [])


def test_status_is_the_one_ternary():
    assert cl.status(True) == "holds"
    assert cl.status(True, False) == "holds"
    assert cl.status(False, True) == "partly"
    assert cl.status(False) == cl.status(False, False) == "does not hold"
    with pytest.raises(TypeError, match="holds must be a bool"):
        cl.status(1)  # a count is not a verdict
    with pytest.raises(TypeError, match="partly must be a bool"):
        cl.status(False, None)


def test_criterion_validates_and_stores_plain_numbers():
    import numpy as np

    c = cl.Criterion("share below 0.9", "at least 0.25", np.float64(0.3), True)
    assert type(c.measured) is float
    assert type(cl.Criterion("n", "all", np.int64(6), True).measured) is int
    assert cl.Criterion("spread", "", "0.1/0.2", None).passed is None
    with pytest.raises(TypeError, match="passed must be a bool"):
        cl.Criterion("x", "at least 1", 2.0, np.bool_(True))
    with pytest.raises(TypeError, match="measured must be a number or a str"):
        cl.Criterion("x", "at least 1", True, True)
    with pytest.raises(ValueError, match="criterion name"):
        cl.Criterion(" ", "at least 1", 2.0, True)
    with pytest.raises(TypeError, match="criteria must be a tuple of Criterion"):
        cl.Claim("C1", "holds", "1 > 0", criteria=[("x", "y", 1, True)])


def test_evidence_table_is_plain_words(tmp_path, monkeypatch):
    rows = (cl.Criterion("PWCCA's lowest mean", "above 0.9", 0.4712, False),
            cl.Criterion("p-value", "below 0.01", 2.9e-47, True),
            cl.Criterion("accuracy spread", "similar", 0.171, None))
    claim = cl.Claim("C1", "partly", "numbers", criteria=rows)
    table = pages.evidence_table(
        [claim], sanity=(cl.Criterion("exact", "below 1e-09", 0, True),))
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


def test_claim_carries_the_paper_figure_interval_cka_and_setup():
    c = cl.Claim("C5", "partly", "distance falls with width", part="",
                        paper_value="0.47 -> 0.28", ours="-0.30 [-0.41, -0.12]", cka_agrees=True,
                        setup=(("dataset", "CIFAR-10", "Fashion-MNIST"),))
    assert c.paper_figure == "Fig. 4a and A7"
    assert set(cl.PAPER_FIGURES) == set(cl.CLAIMS)
    with pytest.raises(ValueError, match="aspect"):
        cl.Claim("C5", "holds", "x", setup=(("colour", "a", "b"),))
    with pytest.raises(TypeError, match="cka_agrees"):
        cl.Claim("C5", "holds", "x", cka_agrees="yes")


def test_record_takes_only_claims(tmp_path, monkeypatch):
    monkeypatch.delenv(scorecard.RESULTS_ENV, raising=False)
    with pytest.raises(TypeError, match="Claim objects, got dict"):
        scorecard.record("ch", [{"id": "C1", "status": "holds", "evidence": "1 > 0"}])


def test_page_has_part_rows_an_overall_verdict_a_tally_and_deviations(tmp_path, monkeypatch):
    monkeypatch.setenv(scorecard.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(scorecard.PROFILE_ENV, "quick")
    setup = (("dataset", "CIFAR-10", "Fashion-MNIST"), ("nets and seeds", "1 ResNet", "3 seeds"))
    scorecard.record("cnn", [cl.Claim("C2", "holds", "62% of coefficients below 0.9", part="CNN",
                                      paper_value="many", ours="0.62 [0.55, 0.70]",
                                      cka_agrees=True, setup=setup)], title="CNN")
    scorecard.record("rnn", [cl.Claim("C2", "not testable", "Not testable at this scale: x",
                                      part="RNN", cka_agrees=False)], title="RNN")
    text = scorecard.write_page(tmp_path / "results", tmp_path / "p.md", profile="quick",
                                chapters=["cnn", "rnn"]).read_text()
    main = text.split("## How our setups differ")[0]
    rows = {line.split("|")[1].strip(): line for line in main.splitlines()
            if line.startswith("| C")}
    assert {"C2 (CNN)", "C2 (RNN)", "C2 overall"} <= set(rows)
    assert "*partly*" in rows["C2 overall"] and "Fig. 1" in rows["C2 (CNN)"]
    assert "0.62 [0.55, 0.70]" in rows["C2 (CNN)"] and "| yes |" in rows["C2 (CNN)"]
    assert "| no |" in rows["C2 (RNN)"]
    n_paper = sum(not cid.startswith("K") for cid in cl.CLAIMS)
    assert ("**Tally:** 0 holds, 1 partly, 0 does not hold, 0 not testable, "
            f"{n_paper - 1} not run (the paper's claims)." in text)
    # the cross-checks are counted apart from the paper's claims
    assert ("Cross-checks from other work, apart: 0 holds, 0 partly, 0 does not hold, "
            f"0 not testable, {len(cl.CLAIMS) - n_paper} not run." in text)
    assert "| C2 (CNN) | dataset | CIFAR-10 | Fashion-MNIST |" in text
    assert "quick** profile" in text and "True" not in text and "False" not in text


def test_overall_status_of_parts():
    assert scorecard.overall_status(["holds", "holds"]) == "holds"
    assert scorecard.overall_status(["does not hold"] * 2) == "does not hold"
    assert scorecard.overall_status(["holds", "does not hold"]) == "partly"
    # an untestable part is no evidence either way, and keeps the claim from holding in full
    assert scorecard.overall_status(["not testable"] * 2) == "not testable"
    assert scorecard.overall_status(["does not hold", "not testable"]) == "does not hold"
    assert scorecard.overall_status(["partly", "not testable"]) == "partly"
    assert scorecard.overall_status(["holds", "not testable"]) == "partly"
    with pytest.raises(ValueError):
        scorecard.overall_status([])


def test_main_table_is_compact_and_every_status_links_to_its_evidence(tmp_path, monkeypatch):
    """The table a reader scans fits the text column (five short columns); what the paper says,
    its number, ours, CKA, the status and the evidence in full are in one section per claim
    (or part) below it, which the row's status links to."""
    import re

    monkeypatch.setenv(scorecard.RESULTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv(scorecard.PROFILE_ENV, "quick")
    long_evidence = "the numbers compared, " * 30 + "end of evidence"
    scorecard.record("cnn", [cl.Claim("C2", "holds", long_evidence, part="CNN",
                                      paper_value="many", ours="0.62 [0.55, 0.70]",
                                      cka_agrees=True, figure="Figure 3")], title="CNN")
    scorecard.record("rnn", [cl.Claim("C2", "partly", "RNN evidence", part="RNN")],
                     title="RNN")
    text = scorecard.write_page(tmp_path / "results", tmp_path / "p.md", profile="quick",
                                chapters=["cnn", "rnn"]).read_text()
    table = [line for line in text.splitlines() if line.startswith("|")]
    header = table[0]
    assert header.count("|") == 6  # five columns
    for column in ("claim", "the paper (figure: number)",
                   "ours (95% interval, or range over seeds)", "CKA agrees", "status"):
        assert f"| {column} |" in header
    main_rows = [r for r in table[2:] if r.startswith(("| C", "| K"))]
    assert all(r.replace("\\|", "").count("|") == 6 for r in main_rows)
    # no long text in the table: the claim's statement and the evidence are below it
    assert not any(long_evidence in r or cl.CLAIMS["C2"] in r for r in main_rows)
    targets = set(re.findall(r"^\((scorecard-[a-z0-9-]+)\)=$", text, re.M))
    links = re.findall(r"\]\((scorecard-[a-z0-9-]+)\)", text)
    assert len(links) == len(main_rows) and set(links) == targets
    assert len(targets) == len(main_rows)  # one section per row, none shared
    cnn = text.split("(scorecard-c2-cnn)=", 1)[1].split("\n(scorecard-", 1)[0]
    for field in ("**The paper says:** " + cl.CLAIMS["C2"], "**The paper's figure:** Fig. 1",
                  "**The paper's number:** many",
                  "**Our number (95% interval, or range over seeds):** 0.62",
                  "**CKA agrees:** yes", "**Status:** **holds**",
                  "**Evidence:** " + long_evidence,
                  "**Tested in:** [CNN](../executed/cnn.ipynb), Figure 3"):
        assert field in cnn, field
    assert "### C2 overall: partly" in text
    assert text.index("**Tally:**") < text.index("## The evidence, claim by claim")


def test_parameter_values_show_floats_to_six_digits():
    from cca_lib.book.pages import show_value

    assert show_value(0.31622776601683794) == "0.316228"
    assert show_value((0.1, 0.31622776601683794)) == "(0.1, 0.316228)"
    assert show_value((5,)) == "(5,)" and show_value([1, 2.5]) == "[1, 2.5]"
    assert show_value("conv4") == "'conv4'" and show_value(True) == "True"


def test_claim_figures_become_cross_references():
    assert scorecard._figure_refs("fig-a, fig-b") == "{numref}`fig-a`, {numref}`fig-b`"
    assert scorecard._figure_refs("Figure 1") == "Figure 1"
