"""Each chapter's ``check(result)`` on small hand-built results that pass, partly pass and fail.

The results are built by hand (no training, no data): each test sets the numbers a verdict rule
reads and asserts the status the rule gives, so a changed threshold or rule fails here.
"""

import re

import numpy as np
import pandas as pd
import pytest

from cca_lib import book
from cca_lib.claims import SETUP_ASPECTS, STATUSES
from cca_lib.experiments import (
    cnn_dynamics,
    learning_rate,
    memorization,
    rnn_dynamics,
    rnn_timesteps,
    signal_noise,
    width,
)


def _plain(claims):
    """Every claim states its criteria, in plain words (no True/False, no identifiers)."""
    for claim in claims:
        assert claim.criteria, f"{claim.id} carries no criteria"
        texts = [claim.evidence] + [t for c in claim.criteria for t in (c.name, c.threshold)]
        texts += [c.measured for c in claim.criteria if isinstance(c.measured, str)]
        for text in texts:
            assert not re.search(r"\b(True|False|None|nan)\b", text), text
            assert "_" not in text, text
        table = book.evidence_table([claim])
        assert set(table["met"]) <= {"yes", "no", "reported only"}
    return claims


def _statuses(claims):
    return [c.status for c in _plain(claims)]


# ---------------------------------------------------------------------------------------------
# signal_noise (C1)
# ---------------------------------------------------------------------------------------------

def _toy(mean_cca, pwcca, ones_off=0.0, pwcca2=None, cka=1.0, jitter=0.0):
    """Two noise readings (std 0.1 and 0.3), two draws each (``jitter`` apart); ``pwcca2``:
    PWCCA under the second reading (default: as under the first)."""
    cfg = signal_noise.Config(n_neurons=10, n_points=100, signal_dims=(2, 5, 10), n_repeats=2,
                              spectrum_dims=(2,), noise_stds=(0.1, 0.3), noise_sweep=(1.0,))
    rows = []
    for sigma, pw in ((0.1, pwcca), (0.3, pwcca if pwcca2 is None else pwcca2)):
        for k, m, p in zip(cfg.signal_dims, mean_cca, pw, strict=True):
            for repeat, dv in ((0, -jitter), (1, jitter)):
                for measure, v in (("mean CCA", m), ("PWCCA", p), ("SVCCA", m),
                                   ("linear CKA", cka)):
                    rows.append({"noise_std": sigma, "signal_dims": k, "signal_fraction": k / 10,
                                 "repeat": repeat, "measure": measure, "similarity": v + dv})
    noise = pd.DataFrame([{"noise_std": 0.1, "repeat": 0, "measure": m, "similarity": 0.5}
                          for m in signal_noise.MEASURES])
    floors = pd.DataFrame([{"noise_std": s, "signal_dims": k, "measure": m, "floor": 0.2}
                           for s in (0.1, 0.3) for k in (2, 10) for m in signal_noise.MEASURES])
    return signal_noise.Result(
        config=cfg, similarities=pd.DataFrame(rows),
        spectra=pd.DataFrame(columns=["noise_std", "signal_dims", "repeat", "index", "rho"]),
        noise=noise, ones={k: k + ones_off for k in cfg.signal_dims}, floors=floors)


def test_signal_noise_check_holds_partly_and_fails():
    mean = [0.25, 0.55, 1.0]
    assert _statuses(signal_noise.check(_toy(mean, [0.95, 0.97, 1.0]))) == ["holds"]
    # above mean CCA everywhere, but drops by more than a quarter of mean CCA's drop
    assert _statuses(signal_noise.check(_toy(mean, [0.6, 0.8, 1.0]))) == ["partly"]
    # robust drop but below 0.9 somewhere: still only partly
    assert _statuses(signal_noise.check(_toy(mean, [0.89, 0.95, 1.0]))) == ["partly"]
    # PWCCA below mean CCA at one k < d
    assert _statuses(signal_noise.check(_toy(mean, [0.2, 0.8, 1.0]))) == ["does not hold"]
    # mean CCA does not fall with the signal fraction
    flat = [0.9, 0.95, 1.0]
    assert _statuses(signal_noise.check(_toy(flat, [0.95, 0.97, 1.0]))) == ["does not hold"]


def test_signal_noise_holds_only_if_it_holds_under_both_readings():
    mean = [0.25, 0.55, 1.0]
    # holds under std 0.1, partly under std 0.3: partly
    (claim,) = signal_noise.check(_toy(mean, [0.95, 0.97, 1.0], pwcca2=[0.6, 0.8, 1.0]))
    assert claim.status == "partly"
    verdicts = [c.measured for c in claim.criteria if c.name.endswith("verdict")]
    assert verdicts == ["holds", "partly"]
    # holds under one reading, fails under the other: partly, not holds
    (claim,) = signal_noise.check(_toy(mean, [0.95, 0.97, 1.0], pwcca2=[0.2, 0.8, 1.0]))
    assert claim.status == "partly"
    # fails under both
    (claim,) = signal_noise.check(_toy(mean, [0.2, 0.8, 1.0], pwcca2=[0.2, 0.8, 1.0]))
    assert claim.status == "does not hold"
    assert signal_noise.combine(["holds", "holds"]) == "holds"
    assert signal_noise.combine(["partly", "does not hold"]) == "partly"


def test_signal_noise_criteria_use_the_spread_over_draws():
    mean = [0.25, 0.55, 1.0]
    # PWCCA's mean is 0.91 at the smallest k, but one draw sits at 0.89: the low end fails
    (claim,) = signal_noise.check(_toy(mean, [0.91, 0.97, 1.0], jitter=0.02))
    rows = {c.name: c for c in claim.criteria}
    low = rows["noise std 0.1: PWCCA's lowest low end of its spread over k"]
    assert low.measured == pytest.approx(0.89) and low.passed is False
    assert claim.status == "partly"
    assert "range over draws" in claim.evidence and "[" in claim.ours


def test_signal_noise_cka_agreement():
    mean = [0.25, 0.55, 1.0]
    (claim,) = signal_noise.check(_toy(mean, [0.95, 0.97, 1.0], cka=1.0))
    assert claim.cka_agrees is True
    (claim,) = signal_noise.check(_toy(mean, [0.6, 0.8, 1.0], cka=1.0))  # CKA flat: holds
    assert claim.status == "partly" and claim.cka_agrees is False
    assert claim.paper_figure == "Fig. 2"
    assert {a for a, _, _ in claim.setup} == set(SETUP_ASPECTS)


def test_signal_noise_check_criteria_rows_carry_the_numbers():
    (claim,) = signal_noise.check(_toy([0.25, 0.55, 1.0], [0.6, 0.8, 1.0]))
    rows = {c.name: c for c in claim.criteria}
    drop = rows["noise std 0.1: PWCCA's drop from the largest to the smallest k/d, high end of "
                "its spread"]
    assert drop.measured == pytest.approx(0.4) and drop.passed is False
    assert str(signal_noise.ROBUST_DROP_RATIO) in drop.threshold
    gap = rows["noise std 0.1: PWCCA minus mean CCA, lowest low end of its spread over k < d"]
    assert gap.measured == pytest.approx(0.25)


def test_signal_noise_sanity_checks_catch_an_inexact_construction():
    assert all(c.passed for c in signal_noise.sanity_checks(_toy([0.2, 0.5, 1], [1, 1, 1])))
    bad = signal_noise.sanity_checks(_toy([0.2, 0.5, 1], [1, 1, 1], ones_off=-1.0))
    assert [c.passed for c in bad] == [False]


# ---------------------------------------------------------------------------------------------
# cnn_dynamics (C2, C3)
# ---------------------------------------------------------------------------------------------

def _cnn(shares_below, s_sims, b_sims, *, after=0.5, n_seeds=3, spread=0.05, trained=True,
         cka=None):
    """``n_seeds`` nets whose layers have the given share of coefficients below 0.9 at t*
    (one list for every seed, or one list per seed) and S/B mean CCA (before T/2, at T) on the
    held-out rows (one list of pairs per layer, or one per seed); ``after``: the share of
    training after accuracy converged (one value or one per seed); the contrast's bootstrap
    interval is its value +- ``spread``. ``cka``: the S/B pairs by linear CKA (default: those
    of mean CCA)."""
    seeds = tuple(range(n_seeds))

    def per_seed(value, nested):
        return list(value) if nested(value) else [value] * n_seeds

    shares = per_seed(shares_below, lambda v: isinstance(v[0], (list, tuple)))
    s_all = per_seed(s_sims, lambda v: isinstance(v[0][0], (list, tuple)))
    b_all = per_seed(b_sims, lambda v: isinstance(v[0][0], (list, tuple)))
    afters = per_seed(after, lambda v: isinstance(v, (list, tuple)))
    layers = tuple(f"conv{i + 1}" for i in range(len(shares[0])))
    steps, half, total = (0, 10, 20, 30, 40), 20, 40
    spectra, sb, tests = [], [], []
    for seed in seeds:
        conv_ckpt = int(round((1 - afters[seed]) * total))
        for layer, share in zip(layers, shares[seed], strict=True):
            rho = [0.5] * int(round(share * 20)) + [0.95] * (20 - int(round(share * 20)))
            spectra += [{"seed": seed, "layer": layer, "step": conv_ckpt, "index": i, "rho": r}
                        for i, r in enumerate(rho)]
        for measure, s_l, b_l in (("mean CCA", s_all[seed], b_all[seed]),
                                  ("linear CKA", *(cka or (s_all[seed], b_all[seed])))):
            for layer, s, b in zip(layers, s_l, b_l, strict=True):
                for subset, (pre, at_t) in (("S", s), ("B", b)):
                    values = (pre, pre, 1.0, (1.0 + at_t) / 2, at_t)
                    sb += [{"seed": seed, "layer": layer, "step": st, "subset": subset,
                            "measure": measure, "k": 4, "similarity": v}
                           for st, v in zip(steps, values, strict=True)]
                loss_s, loss_b = 1 - s[1], 1 - b[1]
                c = loss_b - cnn_dynamics.B_LOSS_RATIO * loss_s
                tests.append({"seed": seed, "layer": layer, "measure": measure,
                              "loss_S": loss_s, "loss_B": loss_b, "contrast": c,
                              "low": c - spread, "high": c + spread})
    nets = pd.DataFrame({"seed": seeds, "final_acc": 0.9,
                         "conv_step": [int(round((1 - a) * total)) for a in afters],
                         "conv_ckpt": [int(round((1 - a) * total)) for a in afters],
                         "after_frac": afters, "trained": trained,
                         "trained_why": "test accuracy changed by 0.1 points"}).set_index("seed")
    return cnn_dynamics.Result(
        config=cnn_dynamics.Config(n_seeds=n_seeds), layers=layers,
        widths=dict.fromkeys(layers, 20), steps=steps, early_step=10, half_step=half,
        nets=nets, history=pd.DataFrame(), spectra=pd.DataFrame(spectra),
        sb=pd.DataFrame(sb), sb_tests=pd.DataFrame(tests), convergence=pd.DataFrame(),
        floors=pd.DataFrame())


GOOD_S, GOOD_B = (0.95, 0.95), (0.5, 0.6)  # B loses 0.4 >= 3 x 0.05, margin > 0.1


def _c2(*args, **kw):
    return cnn_dynamics.check(_cnn(*args, **kw))[0]


def _c3(*args, **kw):
    return cnn_dynamics.check(_cnn(*args, **kw))[1]


def test_cnn_dynamics_check_c2_holds_partly_and_fails():
    def c2(shares, **kw):
        n = len(shares if not isinstance(shares[0], list) else shares[0])
        return _statuses([_c2(shares, [GOOD_S] * n, [GOOD_B] * n, **kw)])[0]

    assert c2([0.25, 0.5, 0.0, 0.0]) == "holds"  # half of the layers, every seed
    assert c2([0.0, 0.3, 0.0]) == "partly"  # one layer of three
    assert c2([0.2, 0.1, 0.0]) == "does not hold"
    # the majority of the nets decides
    assert c2([[0.3, 0.3, 0.0], [0.3, 0.3, 0.0], [0.0, 0.0, 0.0]]) == "holds"
    assert c2([[0.3, 0.3, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.0]]) == "partly"
    assert c2([[0.3, 0.3, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]) == "does not hold"
    # fewer than MIN_SEEDS nets never make it hold
    assert c2([0.3, 0.3], n_seeds=2) == "partly"


def test_cnn_dynamics_c2_is_not_testable_with_little_training_after_convergence():
    claim = _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=0.35)
    assert claim.status == "not testable" and claim.part == "CNN"
    assert claim.evidence.startswith("Not testable at this scale: 35% of training")
    rows = [c for c in claim.criteria if c.name.startswith("share of training after")]
    assert [c.passed for c in rows] == [False] * 3 and rows[0].threshold == "at least 0.4"
    assert _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=0.4).status == "holds"
    # one untestable net counts as not holding; two make the claim untestable
    mixed = _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=[0.5, 0.5, 0.1])
    assert mixed.status == "holds" and "seed 2 not testable" in mixed.evidence
    most = _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=[0.5, 0.1, 0.1])
    assert most.status == "not testable" and most.evidence.startswith("Not testable")
    assert "under-trained" in _c2([0.5], [GOOD_S], [GOOD_B], trained=False).evidence


def test_cnn_dynamics_check_c3_holds_partly_and_fails():
    def c3(s, b, **kw):
        return _statuses([_c3([0.5] * len(s[0] if isinstance(s[0][0], tuple) else s),
                              s, b, **kw)])[0]

    assert c3([GOOD_S, GOOD_S], [GOOD_B, GOOD_B]) == "holds"
    assert c3([GOOD_S, (0.95, 0.8)], [GOOD_B, (0.2, 0.2)]) == "partly"  # S falls below 0.85
    assert c3([GOOD_S, GOOD_S], [GOOD_B, (0.9, 0.9)]) == "partly"  # B loses 0.1 < 3 x 0.05
    assert c3([(0.95, 0.8)] * 2, [GOOD_B] * 2) == "does not hold"
    # the headline needs its whole interval above 0: B loses 0.4, 3 x S's 0.36
    assert c3([(0.95, 0.88)], [(0.5, 0.6)], spread=0.01) == "holds"
    assert c3([(0.95, 0.88)], [(0.5, 0.6)], spread=0.05) == "does not hold"
    # the majority of the nets decides
    bad = [(0.95, 0.8)] * 2
    assert c3([[GOOD_S] * 2, [GOOD_S] * 2, bad], [[GOOD_B] * 2] * 3) == "holds"
    assert c3([[GOOD_S] * 2, bad, bad], [[GOOD_B] * 2] * 3) == "does not hold"


def test_cnn_dynamics_c3_judges_only_the_checkpoints_after_half():
    # S weak before T/2 (0.5 at t_early, where B was chosen) does not decide: only t > T/2
    claim = _c3([0.5], [(0.5, 0.95)], [(0.1, 0.6)])
    assert claim.status == "holds"
    lowest = [c for c in claim.criteria if c.name.startswith("lowest similarity of S")]
    assert lowest[0].measured == pytest.approx(0.95)  # min over steps 30 and 40


def test_cnn_dynamics_c3_reports_whether_cka_agrees_and_the_interval():
    agree = _c3([0.5], [GOOD_S], [GOOD_B])
    assert agree.cka_agrees is True and "B lost 0.40" in agree.ours
    differ = _c3([0.5], [GOOD_S], [GOOD_B], cka=([(0.95, 0.8)], [GOOD_B]))
    assert differ.status == "holds" and differ.cka_agrees is False
    assert "By linear CKA: does not hold" in differ.evidence
    loss = [c for c in agree.criteria if c.name.startswith("similarity B lost")][0]
    assert loss.measured == pytest.approx(0.4 - 3 * 0.05)
    assert "[0.200, 0.300]" in loss.threshold and loss.passed
    for claim in (agree, _c2([0.5], [GOOD_S], [GOOD_B])):  # the setup in plain words
        assert {r[0] for r in claim.setup} == set(SETUP_ASPECTS)
        assert all("_" not in v for row in claim.setup for v in row), claim.setup


def test_cnn_dynamics_c3_evidence_counts_the_cells_of_each_criterion():
    # B loses more than 3 x S everywhere, but S stays within 0.1 of B: direction, not size
    claim = _c3([0.5], [(0.95, 0.99)], [(0.9, 0.94)], spread=0.01)
    assert claim.status == "does not hold"
    assert "S stayed at 0.85 or above in 3 of 3" in claim.evidence
    assert "S minus B reached the 0.1 margin in 0 of 3 (gaps 0.037 to 0.037)" in claim.evidence
    assert "B's loss exceeded 3 x S's (interval above 0) in 3 of 3" in claim.evidence
    assert "the direction matches the paper everywhere, the size nowhere" in claim.evidence
    held = _c3([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2)
    assert "margin in 6 of 6" in held.evidence and "direction matches" not in held.evidence


def test_cnn_dynamics_c2_names_both_accuracy_rules_and_the_share_intervals():
    import dataclasses

    result = _cnn([0.3, 0.0], [GOOD_S] * 2, [GOOD_B] * 2, trained=[True, False, True])
    claim = _plain([cnn_dynamics.check(result)[0]])[0]
    assert "averaged over 3 consecutive evaluations" in claim.evidence
    assert "a net can meet one and miss the other: seed 1 converged by the first rule (from " \
        "step 20 on; t* = 20) but missed the second" in claim.evidence
    assert "have no interval" in claim.evidence
    agree = _c2([0.3, 0.0], [GOOD_S] * 2, [GOOD_B] * 2)
    assert "here they agree on every net" in agree.evidence
    shares = pd.DataFrame([{"seed": s, "layer": layer, "step": 20, "share": v, "low": lo,
                            "high": hi} for s in range(3)
                           for layer, v, lo, hi in (("conv1", 0.3, 0.2, 0.35),
                                                    ("conv2", 0.0, 0.0, 0.05))])
    with_ci = _plain([cnn_dynamics.check(dataclasses.replace(result, shares=shares))[0]])[0]
    assert with_ci.status == claim.status  # the interval is reported, not judged
    row = [c for c in with_ci.criteria if c.name.startswith("share of coefficients below 0.9 "
                                                            "at t* (conv1, seed 1")][0]
    assert "95% interval over probe images [0.200, 0.350]" in row.name and row.passed
    assert "conv1 of seed 0 0.300 [0.200, 0.350]" in with_ci.evidence
    assert "3 of 3 intervals reach below 0.25" in with_ci.evidence
    low = dataclasses.replace(_cnn([0.0, 0.0], [GOOD_S] * 2, [GOOD_B] * 2),
                              shares=shares.assign(share=0.0, low=0.0, high=0.1))
    none_met = cnn_dynamics.check(low)[0].evidence
    assert "No share met the level 0.25; the largest, conv1 of seed 0, is 0.000 [0.000, " \
        "0.100]" in none_met


# ---------------------------------------------------------------------------------------------
# memorization (C4)
# ---------------------------------------------------------------------------------------------

_MEM_GOOD = {  # (probe, layer) -> (gen, mem, inter) mean distances
    **{(p, "conv1"): (0.10, 0.11, 0.12) for p in ("train", "test")},
    **{(p, layer): (0.2, 0.5, 0.52) for p in ("train", "test") for layer in ("conv2", "conv3")},
    ("train", "logits"): (0.1, 0.1, 0.8),
    ("test", "logits"): (0.1, 0.7, 0.8),
}
_MEM_N = 4  # nets per group: 70 labelings, so a permutation p can fall below 0.05


def _mem(overrides=None, fit=True, gen_trained=True, cka=None):
    """Hand-built C4 result: every pair of a kind at its mean +- 0.01 (deterministic)."""
    means = {**_MEM_GOOD, **(overrides or {})}
    cka_means = {**means, **(cka or {})}
    layers = ("conv1", "conv2", "conv3", "logits")
    groups = ["generalizing"] * _MEM_N + ["memorizing"] * _MEM_N
    rows = []
    for (probe, layer), values in means.items():
        for a in range(2 * _MEM_N):
            for b in range(a + 1, 2 * _MEM_N):
                kind = groups[a] if groups[a] == groups[b] else "inter"
                k = memorization.PAIRS.index(kind)
                eps = 0.01 * ((a + b) % 3 - 1)
                rows.append({"layer": layer, "depth": layers.index(layer) + 1, "probe": probe,
                             "pair": kind, "i": a % _MEM_N, "j": b % _MEM_N, "a": a, "b": b,
                             "distance": values[k] + eps,
                             "cka": cka_means[(probe, layer)][k] + eps})
    floors = pd.DataFrame([{"probe": p, "layer": layer, "measure": m, "floor": 0.9,
                            "low": 0.88, "high": 0.92}
                           for p in ("train", "test") for layer in layers
                           for m in ("distance", "cka")])
    nets = pd.DataFrame({"group": groups, "seed": range(2 * _MEM_N),
                         "train_acc": [1.0] * (2 * _MEM_N), "test_acc": [0.8] * _MEM_N
                         + [0.1] * _MEM_N, "converged": [True] * (2 * _MEM_N),
                         "reason": [""] * (2 * _MEM_N),
                         "trained": [gen_trained] + [True] * (_MEM_N - 1)
                         + [True] * (_MEM_N - 1) + [fit],
                         "trained_rule": ["rule"] * (2 * _MEM_N)})
    return memorization.Result(config=memorization.Config(n_nets=_MEM_N), layers=layers,
                               nets=nets, distances=pd.DataFrame(rows), floors=floors)


def test_memorization_check_holds_partly_and_fails():
    (claim,) = _plain(memorization.check(_mem()))
    assert claim.status == "holds" and claim.cka_agrees is True
    assert claim.ours and claim.paper_value and {r[0] for r in claim.setup} == set(
        claims_setup_aspects())
    # memorizing pairs much closer than inter pairs on training inputs: statement 2 fails
    assert _statuses(memorization.check(_mem({("train", "conv3"): (0.2, 0.5, 0.8)}))) == \
        ["partly"]
    # the memorizing group does not agree at the logits on training inputs: statement 4 fails
    assert _statuses(memorization.check(_mem({("train", "logits"): (0.1, 0.6, 0.8)}))) == \
        ["partly"]
    # on test inputs the memorizing group agrees at the logits too: statement 4 fails
    assert _statuses(memorization.check(_mem({("test", "logits"): (0.1, 0.1, 0.8)}))) == \
        ["partly"]
    # first layer differs by more than 0.05: statement 3 fails
    assert _statuses(memorization.check(_mem({("test", "conv1"): (0.1, 0.2, 0.2)}))) == \
        ["partly"]
    # no gap between generalizing and memorizing pairs: the permutation test fails
    assert _statuses(memorization.check(_mem({("test", "conv2"): (0.47, 0.47, 0.5)}))) == \
        ["does not hold"]
    # a memorizing net did not fit its labels: not a valid comparison
    assert _statuses(memorization.check(_mem(fit=False))) == ["does not hold"]


def claims_setup_aspects():
    from cca_lib.claims import SETUP_ASPECTS

    return SETUP_ASPECTS


def test_memorization_check_uses_a_permutation_test_and_an_equivalence_margin():
    (claim,) = memorization.check(_mem())
    perm = [c for c in claim.criteria if "permutation p-value" in c.name]
    assert len(perm) == 4 and all(c.measured == pytest.approx(1 / 70) for c in perm)
    equiv = [c for c in claim.criteria if c.name.startswith("inter minus memorizing")]
    assert len(equiv) == 4 and all(c.passed for c in equiv)
    # inter 0.1 farther than memorizing, gap 0.3: inside the margin 0.15; 0.2 is not
    assert _statuses(memorization.check(_mem({("train", "conv3"): (0.2, 0.5, 0.6)}))) == \
        ["holds"]
    assert _statuses(memorization.check(_mem({("train", "conv3"): (0.2, 0.5, 0.7)}))) == \
        ["partly"]


def test_memorization_evidence_gives_inter_minus_memorizing_beside_the_margin():
    result = _mem({("train", "conv3"): (0.2, 0.5, 0.6)})
    (claim,) = memorization.check(result)
    assert claim.status == "holds"  # within the margin 0.15: the rule passes
    assert "train conv3: inter minus memorizing 0.100 [" in claim.evidence
    assert "margin 0.150" in claim.evidence
    assert re.search(r"memorizing pairs are closer to each other than inter pairs \(interval "
                     r"above 0\) in [^;]*train conv3", claim.evidence)
    assert "train conv3 (within the margin)" in claim.evidence
    (beyond,) = memorization.check(_mem({("train", "conv3"): (0.2, 0.5, 0.7)}))
    assert beyond.status == "partly" and "train conv3 (beyond the margin)" in beyond.evidence
    text = memorization.describe(result)
    assert "Inter minus memorizing is 0.100 [" in text
    assert "Measured, memorizing pairs are closer to each other than inter pairs (0.50 against " \
        "0.60" in text
    # memorizing pairs farther apart than inter pairs: nothing to flag
    far = {(p, layer): (0.2, 0.52, 0.5) for p in ("train", "test") for layer in ("conv2", "conv3")}
    (claim,) = memorization.check(_mem(far))
    assert "closer to each other" not in claim.evidence
    assert "closer to each other" not in memorization.describe(_mem(far))


def test_memorization_check_caps_under_trained_generalizers_and_compares_cka():
    (claim,) = memorization.check(_mem(gen_trained=False))
    assert claim.status == "partly" and "under-trained" in claim.evidence
    # CKA sees no gap in conv3: its verdict differs from PWCCA's
    (claim,) = memorization.check(_mem(cka={("train", "conv3"): (0.5, 0.5, 0.52)}))
    assert claim.status == "holds" and claim.cka_agrees is False


# ---------------------------------------------------------------------------------------------
# width (C5, C6)
# ---------------------------------------------------------------------------------------------

_W = (6, 8, 12, 16, 24)


def _width(trained, init, acc=(0.80, 0.82, 0.85, 0.87, 0.90), seeds=3, all_trained=True,
           cka=None, acc_spread=0.0):
    """``trained`` / ``init``: layer -> mean within-group distance per width (each pair at it
    +- 0.002, deterministic); ``acc_spread``: the nets of a width have test accuracies up to
    this far from the width's (deterministic), which widens the bootstrap intervals of r."""
    cfg = width.Config(widths=_W, n_seeds=seeds)
    rows = []
    for state, values in (("trained", trained), ("init", init)):
        for layer, ds in values.items():
            alt = (cka or {}).get((state, layer), ds)
            for w, d, dc in zip(cfg.widths, ds, alt, strict=True):
                for i in range(seeds):
                    for j in range(i + 1, seeds):
                        eps = 0.002 * ((i + j + w) % 3 - 1)
                        rows.append({"width": w, "layer": layer, "state": state, "i": i,
                                     "j": j, "distance": d + eps, "cka": dc + eps})
    n = len(_W) * seeds
    nets = pd.DataFrame({"width": [w for w in cfg.widths for _ in range(seeds)],
                         "seed": list(range(seeds)) * len(_W),
                         "test_acc": [a + 0.001 * s + acc_spread * ((7 * s + i * seeds + s) % 3 - 1)
                                      for i, a in enumerate(acc) for s in range(seeds)],
                         "train_acc": [1.0] * n, "converged": [True] * n,
                         "trained": [all_trained] + [True] * (n - 1),
                         "trained_rule": ["rule"] * n})
    floors = pd.DataFrame([{"layer": layer, "measure": m, "floor": 0.9, "low": 0.88,
                            "high": 0.92} for layer in cfg.layers for m in ("distance", "cka")])
    return width.Result(config=cfg, nets=nets, distances=pd.DataFrame(rows), floors=floors)


FALLING, FLAT_INIT = (0.5, 0.45, 0.4, 0.35, 0.3), (0.6, 0.6, 0.6, 0.6, 0.6)
FALLING_INIT = (0.6, 0.55, 0.5, 0.45, 0.4)


def test_width_check_holds_partly_and_fails():
    good = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT})
    claims = _plain(width.check(good))
    assert _statuses(claims) == ["holds", "holds"]
    assert all(c.cka_agrees is True and c.ours and c.setup for c in claims)
    # the control at initialization falls as much as the trained distance: not training's work;
    # accuracy correlates as strongly with the untrained distances, so C6 fails its control too
    control = _width({"conv4": FALLING, "logits": FALLING},
                     {"conv4": FALLING_INIT, "logits": FLAT_INIT})
    assert _statuses(width.check(control)) == ["does not hold", "does not hold"]
    # initialization distances that rise with width: the correlation part passes, the "barely
    # change" part does not
    rising = _width({"conv4": FALLING, "logits": FALLING},
                    {"conv4": FALLING_INIT[::-1], "logits": FLAT_INIT})
    assert _statuses(width.check(rising)) == ["holds", "partly"]
    # nets that missed the trained rule: at most partly, and the evidence says so
    under = width.check(_width({"conv4": FALLING, "logits": FALLING},
                               {"conv4": FLAT_INIT, "logits": FLAT_INIT}, all_trained=False))
    assert _statuses(under) == ["partly", "partly"]
    assert all("under-trained" in c.evidence for c in under)


def test_width_check_is_decided_on_hidden_layers_not_the_logits():
    # the logits rise with width while conv4 falls: the logits are reported, not judged
    res = _width({"conv4": FALLING, "logits": FALLING[::-1]},
                 {"conv4": FLAT_INIT, "logits": FLAT_INIT})
    c5, c6 = width.check(res)
    assert (c5.status, c6.status) == ("holds", "holds")
    logit_rows = [c for c in c5.criteria + c6.criteria if "logits" in c.name]
    assert logit_rows and all(c.passed is None and "near-circular" in c.name
                              for c in logit_rows)
    # and conv4 flat while the logits fall: nothing holds
    res = _width({"conv4": FLAT_INIT, "logits": FALLING},
                 {"conv4": FLAT_INIT, "logits": FLAT_INIT})
    assert _statuses(width.check(res)) == ["does not hold", "does not hold"]


def test_width_check_c6_needs_a_significant_correlation():
    # falls with width, but accuracy does not follow: C5 holds, C6's correlation fails
    res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT},
                 acc=(0.85, 0.80, 0.86, 0.81, 0.84))
    c5, c6 = width.check(res)
    assert (c5.status, c6.status) == ("holds", "does not hold")
    assert any(c.name.startswith("Pearson r") and c.passed is False for c in c6.criteria)
    p = [c for c in c6.criteria if c.name.startswith("permutation p-value")
         and "conv4" in c.name][0]
    assert p.passed is False and "120 orderings" in p.threshold


def test_width_check_c6_judges_the_whole_interval_of_r():
    # r's estimate is near -1, but with accuracies spread within each width its interval
    # reaches above -0.8: the correlation part fails (the point estimate alone would pass)
    res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT},
                 acc_spread=0.05)
    t = res.trend().loc["conv4"]
    assert t["r"] <= width.PEARSON_MAX < t["r high"]
    c5, c6 = width.check(res)
    assert (c5.status, c6.status) == ("holds", "does not hold")
    (row,) = [c for c in c6.criteria if c.name.startswith("Pearson r") and "conv4" in c.name]
    assert row.passed is False and row.measured == pytest.approx(t["r high"])
    # a narrow spread keeps the whole interval below -0.8
    res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT},
                 acc_spread=0.01)
    assert width.check(res)[1].status == "holds"


def test_width_check_c6_trained_correlation_must_beat_the_initialization_control():
    # distances at initialization fall a little with width (within the flat margin), in step
    # with accuracy: untrained nets already give r near -1, so training adds nothing
    init = tuple(0.6 - 0.004 * np.log2(w / 6) for w in _W)
    acc = tuple(0.80 + 0.05 * np.log2(w / 6) for w in _W)
    res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": init, "logits": FLAT_INIT},
                 acc=acc)
    t = res.trend().loc["conv4"]
    assert t["r high"] <= width.PEARSON_MAX and t["init r"] < -0.99
    assert t["r difference high"] >= width.R_DIFFERENCE_MAX
    c5, c6 = width.check(res)
    assert (c5.status, c6.status) == ("holds", "does not hold")
    (row,) = [c for c in c6.criteria if c.name.startswith("trained minus initialization r")
              and "conv4" in c.name]
    assert row.passed is False and "stronger than the control" in row.threshold
    assert "at initialization r = " in c6.evidence and "at initialization r = " in c6.ours
    # with flat distances at initialization the control is passed
    good = _width({"conv4": FALLING, "logits": FALLING},
                  {"conv4": FLAT_INIT, "logits": FLAT_INIT}, acc=acc)
    assert width.check(good)[1].status == "holds"


def test_width_check_init_slope_interval_and_cka():
    # a small init slope (0.005 per doubling) is within the margin, a larger one is not (both
    # rising, so that accuracy is not anti-correlated with them: the r control passes)
    small = tuple(0.6 + 0.005 * np.log2(w / 6) for w in _W)
    large = tuple(0.6 + 0.03 * np.log2(w / 6) for w in _W)
    for init, expected in ((small, "holds"), (large, "partly")):
        res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": init, "logits": FLAT_INIT})
        assert width.check(res)[1].status == expected
    # CKA sees a flat trained curve: its verdict differs
    res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT},
                 cka={("trained", "conv4"): FLAT_INIT})
    assert [c.cka_agrees for c in width.check(res)] == [False, False]


# ---------------------------------------------------------------------------------------------
# learning_rate (C7)
# ---------------------------------------------------------------------------------------------

def _ci(estimate, low, high):
    from cca_lib.stats import Interval

    return Interval(estimate, low, high, 0.95, 2000)


def _lr_analysis(measure="PWCCA", nets=tuple(range(6)), **changes):
    """A hand-built analysis whose numbers pass every C7 criterion."""
    lrs = np.array([0.01, 0.01, 0.1, 0.1, 1.0, 1.0, 0.1, 0.01])[list(nets)]
    fields = dict(measure=measure, nets=tuple(nets), lrs=lrs, distances=np.zeros((6, 6)),
                  linkage=np.zeros((5, 4)), silhouettes={2: 0.2, 3: 0.4}, eligible=(2, 3),
                  n_clusters=3, clusters=np.array([1, 1, 2, 2, 3, 3]),
                  silhouette_ci=_ci(0.4, 0.3, 0.5), ari=1.0, ari_at_n_lrs=1.0,
                  lr_consistent=1.0, lr_contiguous=True, mantel_r=0.8, mantel_p=1e-3,
                  mantel_ci=_ci(0.8, 0.6, 0.9), within=0.1, between=0.3, contrast_p=1e-3,
                  contrast_ci=_ci(0.2, 0.1, 0.3))
    return learning_rate.Analysis(**{**fields, **changes})


def _lr(pwcca=None, cka=None, *, acc=(0.85, 0.84, 0.86, 0.85, 0.845, 0.855),
        trained=(True,) * 6, analyses=None):
    """Six nets, 3 learning rates x 2 seeds, their test accuracies ``acc``."""
    cfg = learning_rate.Config(learning_rates=(0.01, 0.1, 1.0), n_seeds=2, max_clusters=3)
    nets = pd.DataFrame({"net": range(6), "lr": [0.01, 0.01, 0.1, 0.1, 1.0, 1.0],
                         "seed": range(6), "test_acc": list(acc), "train_acc": [0.9] * 6,
                         "converged": [True] * 6, "reason": [""] * 6,
                         "trained": list(trained),
                         "trained_why": ["test accuracy changed little"] * 6})
    similar, judged, kept = learning_rate.judged_nets(nets)
    nets["similar"], nets["judged"] = similar, judged
    nets["cluster"] = [1, 1, 2, 2, 3, 3]
    if analyses is None:
        analyses = {("PWCCA", "all nets"): _lr_analysis(),
                    ("linear CKA", "all nets"): _lr_analysis("linear CKA")}
        if len(kept) >= 2:
            analyses[("PWCCA", "similar accuracy")] = pwcca or _lr_analysis()
            analyses[("linear CKA", "similar accuracy")] = cka or _lr_analysis("linear CKA")
    dist = np.full((6, 6), 0.2) - 0.2 * np.eye(6)
    return learning_rate.Result(
        config=cfg, nets=nets, distances=dist, cka_distances=dist,
        floors={"PWCCA": np.array([0.9, 0.92]), "linear CKA": np.array([0.99, 0.99])},
        floor_pairs=((0, 2), (2, 4)), best_acc=float(max(acc)), judged_lrs=kept,
        analyses=analyses)


def test_learning_rate_check_holds_partly_and_fails():
    assert _statuses(_plain(learning_rate.check(_lr()))) == ["holds"]
    # the node-label test and a valid cut pass, and some (not all) cut criteria: partly
    one_cut_criterion_fails = (dict(silhouettes={2: 0.2, 3: 0.24}), dict(lr_contiguous=False),
                               dict(lr_consistent=2 / 3))
    for change in one_cut_criterion_fails:
        assert _statuses(learning_rate.check(_lr(_lr_analysis(**change)))) == ["partly"], change
    two_fail = _lr_analysis(silhouettes={2: 0.2, 3: 0.24}, lr_consistent=2 / 3)
    assert _statuses(learning_rate.check(_lr(two_fail))) == ["partly"]
    # every cut criterion fails, or the node-label test does, or there is no valid cut: no credit
    no_credit = (dict(silhouettes={2: 0.2, 3: 0.24}, lr_consistent=2 / 3, lr_contiguous=False),
                 dict(contrast_p=0.06), dict(n_clusters=1, silhouettes={1: 0.4}),
                 dict(contrast_p=0.06, lr_contiguous=False))
    for change in no_credit:
        assert _statuses(learning_rate.check(_lr(_lr_analysis(**change)))) == \
            ["does not hold"], change


def test_learning_rate_continuum_does_not_decide_c7():
    # a strong continuum does not earn "partly" when the clusters fail (the old rule's credit)
    clusters_fail = _lr_analysis(contrast_p=0.3, lr_consistent=2 / 3)
    (claim,) = _plain(learning_rate.check(_lr(clusters_fail)))
    assert claim.status == "does not hold"
    assert "a strong ordering" in claim.evidence and "not a strong ordering" not in claim.evidence
    # and a weak continuum takes nothing away from clusters that pass
    for change in (dict(mantel_p=0.06), dict(mantel_r=0.1)):
        (claim,) = _plain(learning_rate.check(_lr(_lr_analysis(**change))))
        assert claim.status == "holds", change
        assert "not a strong ordering" in claim.evidence
    mantel_rows = [c for c in claim.criteria if "Mantel" in c.name]
    assert len(mantel_rows) == 2 and all(c.passed is None for c in mantel_rows)
    # CKA is held to the same rule: its continuum alone does not make it agree
    (claim,) = learning_rate.check(_lr(clusters_fail, cka=_lr_analysis("linear CKA",
                                                                       contrast_p=0.3)))
    assert claim.cka_agrees is True and '"does not hold"' in claim.evidence


def test_learning_rate_cut_must_obey_the_minimum_cluster_size():
    # two learning rates x 3 nets, plus one outlier net far from every other: every cut into
    # 2 or 3 clusters leaves the outlier alone, so no cut is valid with min_cluster_size 2
    lrs = np.array([0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0])
    d = np.full((7, 7), 0.3)
    d[:3, :3] = d[3:6, 3:6] = 0.1
    d[6, :] = d[:, 6] = 0.9
    np.fill_diagonal(d, 0.0)
    kw = dict(measure="PWCCA", max_clusters=3, seed=0, n_perm=99, n_boot=50)
    a = learning_rate.analyze(d, lrs, min_cluster_size=1, **kw)
    assert a.eligible == (2, 3) and a.valid_cut
    strict = learning_rate.analyze(d, lrs, min_cluster_size=2, **kw)
    assert strict.eligible == () and not strict.valid_cut
    assert np.isnan(strict.silhouette) and np.isnan(strict.ari)
    assert np.isnan(strict.lr_consistent) and not strict.lr_contiguous
    # the old fallback took the best forbidden cut (the outlier alone): its silhouette is high
    assert max(strict.silhouettes.values()) > learning_rate.SILHOUETTE_MIN
    assert learning_rate.verdict(strict) == "does not hold"
    (claim,) = _plain(learning_rate.check(_lr(_lr_analysis(
        n_clusters=1, clusters=np.ones(6, dtype=int), eligible=()))))
    assert claim.status == "does not hold" and claim.ours.startswith("no valid cut")
    cut_rows = [c for c in claim.criteria if c.measured == "no valid cut" and c.passed is not None]
    assert len(cut_rows) == 4 and all(c.passed is False for c in cut_rows)
    assert "without a valid cut the cut criteria fail" in claim.evidence
    # a chosen cut outside the eligible ones (the old fallback) is no valid cut either
    (claim,) = learning_rate.check(_lr(_lr_analysis(eligible=(2,))))
    assert claim.status == "does not hold"


def test_learning_rate_check_judges_only_nets_of_similar_accuracy():
    # the lr-0.01 nets are 10 points below the best: left out, two learning rates are left
    res = _lr(acc=(0.75, 0.74, 0.86, 0.85, 0.845, 0.855))
    assert res.judged_lrs == (0.1, 1.0) and not res.testable
    (claim,) = _plain(learning_rate.check(res))
    assert claim.status == "not testable" and claim.cka_agrees is None
    assert claim.evidence.startswith("Not testable on nets of similar accuracy: ")
    assert "lr 0.01: 2" in claim.evidence or any("lr 0.01: 2" in str(c.measured)
                                                 for c in claim.criteria)
    # the same nets, all within 2 points: testable, and the verdict is the analysis'
    (claim,) = learning_rate.check(_lr())
    assert claim.status == "holds" and claim.cka_agrees is True


def test_learning_rate_judged_nets_window_and_nets_per_rate():
    nets = pd.DataFrame({"lr": [0.01, 0.01, 0.1, 0.1, 1.0, 1.0],
                         "test_acc": [0.80, 0.795, 0.81, 0.789, 0.80, 0.79]})
    similar, judged, kept = learning_rate.judged_nets(nets)
    # best 0.81: the window is [0.79, 0.81]; 0.789 falls out, leaving lr 0.1 one net
    assert similar.tolist() == [True, True, True, False, True, True]
    assert kept == (0.01, 1.0)
    assert judged.tolist() == [True, True, False, False, True, True]


def test_learning_rate_check_reports_whether_cka_agrees():
    (claim,) = learning_rate.check(_lr(cka=_lr_analysis("linear CKA", contrast_p=0.3)))
    assert claim.status == "holds" and claim.cka_agrees is False
    assert '"does not hold"' in claim.evidence
    (claim,) = learning_rate.check(_lr(cka=_lr_analysis("linear CKA", lr_contiguous=False)))
    assert claim.cka_agrees is False and '"partly"' in claim.evidence


def test_learning_rate_check_says_when_nets_are_under_trained():
    (claim,) = learning_rate.check(_lr(trained=(True, False, True, True, False, True)))
    assert "Tested on under-trained nets: 2 of 6" in claim.evidence
    (claim,) = learning_rate.check(_lr())
    assert "under-trained" not in claim.evidence


def test_learning_rate_check_reports_the_accuracy_spread_without_judging_it():
    (claim,) = learning_rate.check(_lr())
    (spread,) = [c for c in claim.criteria if c.name.startswith("spread")]
    assert spread.passed is None
    # clusters {0, 1}, {2, 3}, {4, 5}: means 0.845, 0.855, 0.85
    assert spread.measured == pytest.approx(0.855 - 0.845)
    assert claim.ours.startswith("silhouette 0.40 [0.30, 0.50] (3 clusters)")
    assert "Mantel r 0.80 [0.60, 0.90] (continuum, reported)" in claim.ours


# ---------------------------------------------------------------------------------------------
# rnn_dynamics (C8, C2)
# ---------------------------------------------------------------------------------------------

_STEPS = (0, 1, 10, 100, 400, 700, 1000)
#: the loss reaches the unigram level (3.0) at step 1, learns context from step 10 and stays
#: within 1% of its final value from step 400 (60% of training after it)
_LOSSES = (4.0, 3.0, 2.5, 2.2, 2.015, 2.01, 2.0)
_LATE_LOSSES = (4.0, 3.0, 2.5, 2.2, 2.1, 2.05, 2.0)  # within 1% only at T: not testable
#: distances at the learning checkpoints 10, 100, 400, 700
BOTTOM_UP = {1: (0.5, 0.2, 0.1, 0.05), 2: (0.6, 0.3, 0.15, 0.1), 3: (0.8, 0.5, 0.3, 0.2)}
TOP_DOWN = {1: BOTTOM_UP[3], 2: BOTTOM_UP[2], 3: BOTTOM_UP[1]}
_PLATEAU = {1: 0.99, 2: 0.98, 3: 0.97}  # step 1, reversed: must not count


def _shift(curves, by):
    return {k: tuple(v + by for v in vs) for k, vs in curves.items()}


def _rnn_seed(seed, pwcca=BOTTOM_UP, mean_cca=None, controls=BOTTOM_UP, cka=None,
              shares=(0.0, 0.25, 0.5), losses=_LOSSES, first=None):
    mean_cca = _shift(pwcca, 0.5) if mean_cca is None else mean_cca
    cka = pwcca if cka is None else cka
    rows = []
    for measure, curves in (("PWCCA", pwcca), ("mean CCA", mean_cca), ("linear CKA", cka),
                            ("cosine", controls), ("Euclidean", controls)):
        for layer, values in curves.items():
            start = 1.0 if first is None else first[layer]  # step 0, before learning
            for step, d in zip(_STEPS, (start, _PLATEAU[layer], *values, 0.0), strict=True):
                rows.append({"seed": seed, "step": step, "epoch": step / 500, "layer": layer,
                             "measure": measure, "distance": d})
    spectra = []
    for step in (400, 700):
        for layer, share in zip((1, 2, 3), shares, strict=True):
            rho = [0.5] * int(share * 8) + [0.95] * (8 - int(share * 8))
            spectra += [{"seed": seed, "step": step, "layer": layer, "index": i, "rho": r}
                        for i, r in enumerate(rho)]
    history = pd.DataFrame({"seed": seed, "step": _STEPS, "epoch": np.array(_STEPS) / 500,
                            "valid_loss": losses, "valid_ppl": np.exp(losses)})
    floors = [{"seed": seed, "layer": layer, "measure": m, "distance": 0.9}
              for layer in (1, 2, 3) for m in rnn_dynamics.MEASURES]
    return rows, spectra, history, floors


def _rnn(*seeds):
    """One hand-built network per keyword dict in ``seeds`` (seeds 0, 1, ...)."""
    parts = [_rnn_seed(i, **kw) for i, kw in enumerate(seeds)]
    n = len(seeds)
    return rnn_dynamics.Result(
        config=rnn_dynamics.Config(n_seeds=n),
        distances=pd.DataFrame([r for p in parts for r in p[0]]),
        spectra=pd.DataFrame([r for p in parts for r in p[1]]),
        history=pd.concat([p[2] for p in parts], ignore_index=True),
        floors=pd.DataFrame([r for p in parts for r in p[3]]),
        nets=pd.DataFrame({"seed": range(n), "trained": [True] * n}),
        steps=_STEPS, steps_per_epoch=500.0,
        metrics={i: {"unigram_valid_loss": 3.0, "valid_ppl": 7.4} for i in range(n)},
        n_samples=10000)


GOOD = {}


def test_rnn_dynamics_check_c8_holds_partly_and_fails():
    assert _statuses(rnn_dynamics.check(_rnn(GOOD, GOOD, GOOD)))[0] == "holds"
    # mean CCA separates the layers as clearly as PWCCA (same curves): partly
    same = {"mean_cca": BOTTOM_UP}
    assert _statuses(rnn_dynamics.check(_rnn(same, same, same)))[0] == "partly"
    # ordered on average, but layers 1 and 2 swap at two of four checkpoints: partly
    swapped = {"pwcca": {1: (0.5, 0.31, 0.16, 0.05), 2: BOTTOM_UP[2], 3: BOTTOM_UP[3]}}
    c8 = rnn_dynamics.check(_rnn(swapped, swapped, swapped))[0]
    assert c8.status == "partly"
    share = next(c for c in c8.criteria if c.name.startswith("seed 0: share"))
    assert share.measured == pytest.approx(0.5) and share.passed is False
    top = {"pwcca": TOP_DOWN}
    assert _statuses(rnn_dynamics.check(_rnn(top, top, top)))[0] == "does not hold"


def test_rnn_dynamics_c8_skips_the_untrained_plateau_and_ties_do_not_count():
    c8 = rnn_dynamics.check(_rnn(GOOD))[0]  # step 1 (reversed) is before learning starts
    share = next(c for c in c8.criteria if c.name.startswith("seed 0: share"))
    assert share.measured == 1.0 and "4 learning checkpoints" in c8.criteria[0].name
    tie = {"pwcca": {1: (0.5, 0.3, 0.1, 0.05), 2: BOTTOM_UP[2], 3: BOTTOM_UP[3]}}
    c8 = rnn_dynamics.check(_rnn(tie))[0]
    share = next(c for c in c8.criteria if c.name.startswith("seed 0: share"))
    assert share.measured == pytest.approx(0.75) and c8.status == "partly"


def test_rnn_dynamics_c8_controls_enter_the_verdict():
    rev = {"controls": TOP_DOWN}
    c8 = rnn_dynamics.check(_rnn(rev, rev, rev))[0]
    assert c8.status == "partly"
    assert "do not show the bottom-up order" in c8.evidence and "reversed" in c8.evidence
    assert "are bottom-up here too" in rnn_dynamics.check(_rnn(GOOD))[0].evidence


def test_rnn_dynamics_c8_is_the_majority_of_the_seeds():
    top = {"pwcca": TOP_DOWN}
    c8 = rnn_dynamics.check(_rnn(GOOD, top, GOOD))[0]
    assert c8.status == "holds"
    verdicts = [c.measured for c in c8.criteria if c.name.endswith("verdict")]
    assert verdicts == ["holds", "does not hold", "holds"]
    assert rnn_dynamics.check(_rnn(GOOD, top, top))[0].status == "does not hold"
    assert "seeds" in c8.ours


def test_rnn_dynamics_c8_reports_the_ordered_share_of_pwcca_against_mean_cca():
    # mean CCA: the same order at every checkpoint, shifted up; the separation index says
    # PWCCA is clearer, the ordered share (1 against 1) does not: the evidence says so
    c8 = rnn_dynamics.check(_rnn(GOOD, GOOD, GOOD))[0]
    assert c8.status == "holds"  # the separation index decides, as before
    assert "seed 0 1.00 against 1.00" in c8.evidence
    assert "PWCCA higher in 0 of 3 seeds, its separation index higher in 3 of 3" in c8.evidence
    assert 'disagree in seed(s) 0, 1, 2' in c8.evidence
    row = next(c for c in c8.criteria
               if c.name.startswith("seed 0: share of learning checkpoints strictly ordered, "))
    assert row.measured == "1.000 against 1.000" and row.passed is None
    # mean CCA reversed at every checkpoint: both readings agree that PWCCA is clearer
    rev = {"mean_cca": _shift(TOP_DOWN, 0.5)}
    c8 = rnn_dynamics.check(_rnn(rev, rev, rev))[0]
    assert "seed 1 1.00 against 0.00" in c8.evidence and "disagree" not in c8.evidence
    assert "PWCCA higher in 3 of 3 seeds" in c8.evidence


def test_rnn_dynamics_c8_reports_whether_the_order_predates_learning():
    c8 = rnn_dynamics.check(_rnn(GOOD, GOOD, GOOD))[0]  # step 0: all layers at 1.0
    assert "(step 0, before learning) the PWCCA distances are already ordered bottom-up in " \
        "0 of 3 seeds" in c8.evidence and "predates" not in c8.evidence
    early = {"first": {1: 0.3, 2: 0.4, 3: 0.5}}
    c8 = rnn_dynamics.check(_rnn(early, early, GOOD))[0]
    assert "already ordered bottom-up in 2 of 3 seeds" in c8.evidence
    assert "predates learning" in c8.evidence and c8.status == "holds"  # reported only
    row = next(c for c in c8.criteria if c.name.startswith("seed 0: PWCCA distance at the "
                                                              "first checkpoint"))
    assert row.measured == "0.300/0.400/0.500 (bottom-up)" and row.passed is None


def test_rnn_dynamics_c8_cka_agreement():
    assert rnn_dynamics.check(_rnn(GOOD, GOOD, GOOD))[0].cka_agrees is True
    flat = {"cka": {1: (0.2,) * 4, 2: (0.2,) * 4, 3: (0.2,) * 4}}
    assert rnn_dynamics.check(_rnn(flat, flat, flat))[0].cka_agrees is False


def test_rnn_dynamics_check_c2_holds_partly_fails_and_not_testable():
    c2 = rnn_dynamics.check(_rnn(GOOD, GOOD, GOOD))[1]
    assert c2.part == "RNN" and c2.status == "holds"
    assert "step 400" in next(c.name for c in c2.criteria if "below" in c.name)
    frac = next(c for c in c2.criteria if c.name.startswith("seed 0: share of training"))
    assert frac.measured == pytest.approx(0.6) and frac.passed is True
    one = {"shares": (0.0, 0.25, 0.0)}  # one layer of three
    assert rnn_dynamics.check(_rnn(one, one, one))[1].status == "partly"
    none = {"shares": (0.0, 0.125, 0.0)}
    assert rnn_dynamics.check(_rnn(none, none, none))[1].status == "does not hold"
    late = {"losses": _LATE_LOSSES}
    c2 = rnn_dynamics.check(_rnn(late, late, late))[1]
    assert c2.status == "not testable"
    # one untestable net of three counts as not holding; the other two decide
    assert rnn_dynamics.check(_rnn(one, late, one))[1].status == "partly"
    assert c2.evidence.startswith("Not testable at this scale")
    assert rnn_dynamics.C2_MIN_AFTER == 0.4 and rnn_dynamics.C2_LOSS_TOL == 0.01


# ---------------------------------------------------------------------------------------------
# rnn_timesteps (C9)
# ---------------------------------------------------------------------------------------------

LATE = (0.6, 0.55, 0.3, 0.0)  # above 0.9 x floor until j = 1: onset 2 = half the window
EARLY = (0.6, 0.3, 0.3, 0.0)  # onset at j = 1, before half the window
REP_LOW, REP_HIGH = (0.05, 0.05, 0.05, 0.0), (0.4, 0.4, 0.4, 0.0)
REP_MID = (0.15, 0.15, 0.15, 0.0)  # below the late context's, but similarity only 0.85


def _ts_seed(seed, trained=LATE, untrained=EARLY, early=REP_LOW, late=REP_HIGH, cka=None):
    curves, floors = [], []
    for model, curve in (("trained", trained), ("untrained", untrained)):
        for layer in (1, 2):
            for measure, values in (("PWCCA", curve), ("linear CKA", cka or curve)):
                for j, d in enumerate(values):
                    curves.append({"seed": seed, "model": model, "layer": layer, "j": j,
                                   "measure": measure, "distance": d})
                floors.append({"seed": seed, "model": model, "layer": layer,
                               "floor": "permuted rows", "measure": measure, "n": 100,
                               "distance": 0.5})
    repeats = [{"seed": seed, "context": context, "layer": layer, "j": j, "measure": m,
                "distance": d}
               for context, curve in (("early", early), ("late", late)) for layer in (1, 2)
               for m in ("PWCCA", "linear CKA") for j, d in enumerate(curve)]
    return curves, floors, repeats


def _timesteps(*seeds, toy_a0=0.0):
    """One hand-built network per keyword dict in ``seeds``: window 4, floors 0.5."""
    cfg = rnn_timesteps.Config(window=4, toy_blend=(0.0, 1.0),
                               training=rnn_dynamics.Config(n_seeds=len(seeds)))
    parts = [_ts_seed(i, **kw) for i, kw in enumerate(seeds)]
    toy = []
    for a, pw, coord in ((0.0, toy_a0, 0.3), (1.0, 0.2, 0.3)):
        for j in range(4):
            for measure, d in (("PWCCA", pw if j < 3 else 0.0), ("mean CCA", 0.0),
                               ("cosine", coord if j < 3 else 0.0),
                               ("Euclidean", coord if j < 3 else 0.0)):
                toy.append({"a": a, "j": j, "measure": measure, "distance": d})
    n = len(seeds)
    return rnn_timesteps.Result(
        config=cfg, curves=pd.DataFrame([r for p in parts for r in p[0]]),
        floors=pd.DataFrame([r for p in parts for r in p[1]]), toy=pd.DataFrame(toy),
        repeats=pd.DataFrame([r for p in parts for r in p[2]]), repeat_floors=pd.DataFrame(),
        n_windows=1000, hidden_size=64, repeat_token="e",
        nets=pd.DataFrame({"seed": range(n), "trained": [True] * n}))


def test_rnn_timesteps_check_holds_partly_and_fails():
    ok = {}
    assert _statuses(rnn_timesteps.check(_timesteps(ok, ok, ok))) == ["holds"]
    swapped = {"early": REP_HIGH, "late": REP_LOW}
    assert _statuses(rnn_timesteps.check(_timesteps(swapped, swapped, swapped))) == ["partly"]
    early = {"trained": EARLY}
    assert _statuses(rnn_timesteps.check(_timesteps(early, early, early))) == ["partly"]
    above = {"trained": (0.6, 0.6, 0.55, 0.0)}  # at j = w - 2 still above the floor
    assert _statuses(rnn_timesteps.check(_timesteps(above, above, above))) == ["partly"]
    neither = {"trained": EARLY, "early": REP_HIGH, "late": REP_LOW}
    assert _statuses(rnn_timesteps.check(_timesteps(neither, neither, neither))) == \
        ["does not hold"]


def test_rnn_timesteps_the_untrained_network_enters_the_verdict():
    same = {"untrained": LATE}  # the untrained net shows the same late onset
    (claim,) = rnn_timesteps.check(_timesteps(same, same, same))
    assert claim.status == "partly"
    assert "as late or later in 3 of 3 seeds" in claim.evidence
    row = next(c for c in claim.criteria if c.name.startswith("seed 0: mean onset"))
    assert row.measured == 2.0 and row.passed is False


def test_rnn_timesteps_reports_the_onset_difference_across_seeds():
    # onsets 2 after training; untrained 1, 2, 1: differences +1, 0, +1
    (claim,) = rnn_timesteps.check(_timesteps({}, {"untrained": LATE}, {}))
    text = "+0.7 (seeds +0.0 to +1.0; above 0 in 2 of 3)"
    assert f"after-training minus untrained onset {text}" in claim.evidence
    row = next(c for c in claim.criteria if c.name.startswith("mean onset over layers, after "
                                                                 "training minus untrained"))
    assert row.measured == text and row.passed is None
    assert claim.status == "holds"  # the per-seed point estimates decide, as before


def test_rnn_timesteps_onset_note_says_when_the_late_onset_is_architectural():
    same = {"untrained": LATE}  # untrained onset 2 = the onset after training
    note = rnn_timesteps.onset_note(_timesteps(same, same, same))
    assert "j = 2.0 after training and j = 2.0 in the untrained networks" in note
    assert "much of the late onset is there before any training" in note
    note = rnn_timesteps.onset_note(_timesteps({}, {}, {}))  # untrained onset 1: half of 2
    assert "j = 1.0 in the untrained" in note and "before any training" not in note
    assert "training moves the onset later" in note
    assert rnn_timesteps.ARCHITECTURAL_ONSET_FRACTION == 0.8


def test_rnn_timesteps_early_repeats_must_be_highly_similar():
    mid = {"early": REP_MID}  # early < late, but mean similarity 0.85 < 0.9
    (claim,) = rnn_timesteps.check(_timesteps(mid, mid, mid))
    assert claim.status == "partly"
    row = next(c for c in claim.criteria if c.name.startswith("seed 0: repeated input after"))
    assert row.measured == "0.85/0.85" and row.passed is False


def test_rnn_timesteps_majority_and_cka():
    ok, bad = {}, {"trained": EARLY, "early": REP_HIGH, "late": REP_LOW}
    (claim,) = rnn_timesteps.check(_timesteps(ok, bad, ok))
    assert claim.status == "holds" and claim.cka_agrees is True
    assert rnn_timesteps.check(_timesteps(ok, bad, bad))[0].status == "does not hold"
    cka_early = {"cka": EARLY}
    (claim,) = rnn_timesteps.check(_timesteps(cka_early, cka_early, cka_early))
    assert claim.status == "holds" and claim.cka_agrees is False


def test_rnn_timesteps_sanity_checks_the_toy_control():
    assert all(c.passed for c in rnn_timesteps.sanity_checks(_timesteps({})))
    bad = rnn_timesteps.sanity_checks(_timesteps({}, toy_a0=0.01))
    assert [c.passed for c in bad] == [False, True, True, True]


def test_toy_and_rnn_claims_fill_the_scorecard_fields_in_plain_words():
    claims = (signal_noise.check(_toy([0.25, 0.55, 1.0], [0.95, 0.97, 1.0]))
              + rnn_dynamics.check(_rnn(GOOD, GOOD, GOOD)) + rnn_timesteps.check(_timesteps({})))
    assert [c.id for c in claims] == ["C1", "C8", "C2", "C9"]
    for c in claims:
        assert c.ours and c.paper_value and c.figure
        assert [a for a, _, _ in c.setup] == list(SETUP_ASPECTS)
        for text in [c.ours, c.paper_value, *(t for row in c.setup for t in row)]:
            assert not re.search(r"\b(True|False|None|nan)\b", text), text
            assert "_" not in text, text
    assert claims[2].part == "RNN" and claims[2].cka_agrees is None


# ---------------------------------------------------------------------------------------------
# The notebooks use the checks and decide nothing themselves
# ---------------------------------------------------------------------------------------------

CHAPTERS = ("signal_noise", "layer_id", "cnn_dynamics", "memorization", "width",
            "learning_rate", "rnn_dynamics", "rnn_timesteps")


@pytest.mark.parametrize("name", CHAPTERS)
def test_notebook_check_cell_calls_check_and_defines_no_verdict_helper(name):
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    checks = [c for c in code if ".check(result)" in c]
    assert len(checks) == 1, f"{name}: expected one cell calling check(result)"
    assert "book.record(" in checks[0] and "book.evidence_table(" in checks[0]
    for cell in code:
        assert not re.search(r"^\s*def ", cell, re.M), f"{name}: a cell defines a function"
        for verdict in STATUSES:
            assert f'"{verdict}"' not in cell and f"'{verdict}'" not in cell, \
                f"{name}: a cell spells out the verdict {verdict!r}"


@pytest.mark.parametrize("name", ("signal_noise", "rnn_dynamics", "rnn_timesteps"))
def test_toy_and_rnn_pages_mention_no_prototypes_threads_or_earlier_builds(name):
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / f"{name}.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for word in ("FEASIBILITY", "prototype", "thread", "earlier build", "previous build",
                 "outside this book"):
        assert word.lower() not in text.lower(), f"{name}: the page mentions {word!r}"
