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

def _toy(mean_cca, pwcca, ones_off=0.0):
    cfg = signal_noise.Config(n_neurons=10, n_points=100, signal_dims=(2, 5, 10), n_repeats=1,
                              spectrum_dims=(2,), noise_sweep=(0.1,))
    rows = []
    for k, m, p in zip(cfg.signal_dims, mean_cca, pwcca, strict=True):
        for measure, v in (("mean CCA", m), ("PWCCA", p), ("SVCCA", m), ("linear CKA", 1.0)):
            rows.append({"signal_dims": k, "signal_fraction": k / 10, "repeat": 0,
                         "measure": measure, "similarity": v})
    noise = pd.DataFrame([{"noise_std": 0.1, "repeat": 0, "measure": m, "similarity": 0.5}
                          for m in signal_noise.MEASURES])
    return signal_noise.Result(
        config=cfg, similarities=pd.DataFrame(rows),
        spectra=pd.DataFrame(columns=["signal_dims", "repeat", "index", "rho"]), noise=noise,
        ones={k: k + ones_off for k in cfg.signal_dims})


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


def test_signal_noise_check_criteria_rows_carry_the_numbers():
    (claim,) = signal_noise.check(_toy([0.25, 0.55, 1.0], [0.6, 0.8, 1.0]))
    rows = {c.name: c for c in claim.criteria}
    drop = rows["PWCCA's drop from the largest to the smallest k/d"]
    assert drop.measured == pytest.approx(0.4) and drop.passed is False
    assert str(signal_noise.ROBUST_DROP_RATIO) in drop.threshold
    assert rows["PWCCA minus mean CCA, smallest over k < d"].measured == pytest.approx(0.25)


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
    assert claim.status == "does not hold" and claim.part == "CNN"
    assert claim.evidence.startswith("Not testable at this scale: 35% of training")
    rows = [c for c in claim.criteria if c.name.startswith("share of training after")]
    assert [c.passed for c in rows] == [False] * 3 and rows[0].threshold == "at least 0.4"
    assert _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=0.4).status == "holds"
    # one untestable net counts as not holding; two make the claim untestable
    mixed = _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=[0.5, 0.5, 0.1])
    assert mixed.status == "holds" and "seed 2 not testable" in mixed.evidence
    most = _c2([0.5, 0.5], [GOOD_S] * 2, [GOOD_B] * 2, after=[0.5, 0.1, 0.1])
    assert most.status == "does not hold" and most.evidence.startswith("Not testable")
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


# ---------------------------------------------------------------------------------------------
# memorization (C4)
# ---------------------------------------------------------------------------------------------

_MEM_GOOD = {  # (probe, layer) -> (gen, mem, inter) mean distances
    **{(p, "conv1"): (0.10, 0.11, 0.12) for p in ("train", "test")},
    **{(p, layer): (0.2, 0.5, 0.52) for p in ("train", "test") for layer in ("conv2", "conv3")},
    ("train", "logits"): (0.1, 0.1, 0.8),
    ("test", "logits"): (0.1, 0.7, 0.8),
}


def _mem(overrides=None, converged=True):
    means = {**_MEM_GOOD, **(overrides or {})}
    layers = ("conv1", "conv2", "conv3", "logits")
    rows = []
    for (probe, layer), values in means.items():
        for pair, v in zip(memorization.PAIRS, values, strict=True):
            for n, eps in enumerate((-0.01, 0.01)):  # two pairs each: sd 0.014
                rows.append({"layer": layer, "depth": layers.index(layer) + 1, "probe": probe,
                             "pair": pair, "i": n, "j": n + 1, "distance": v + eps})
    nets = pd.DataFrame({"group": ["generalizing"] * 2 + ["memorizing"] * 2,
                         "seed": range(4), "train_acc": [1.0, 1.0, 1.0, 0.5],
                         "test_acc": [0.8, 0.8, 0.1, 0.1],
                         "converged": [True, True, True, converged], "reason": [""] * 4})
    return memorization.Result(config=memorization.Config(n_nets=2), layers=layers, nets=nets,
                               distances=pd.DataFrame(rows))


def test_memorization_check_holds_partly_and_fails():
    assert _statuses(memorization.check(_mem())) == ["holds"]
    # memorizing pairs much closer than inter pairs on training inputs: statement 2 fails
    assert _statuses(memorization.check(_mem({("train", "conv3"): (0.2, 0.5, 0.8)}))) == \
        ["partly"]
    # the memorizing group does not agree at the logits on training inputs: statement 4 fails
    assert _statuses(memorization.check(_mem({("train", "logits"): (0.1, 0.6, 0.8)}))) == \
        ["partly"]
    # first layer differs by more than 0.05: statement 3 fails
    assert _statuses(memorization.check(_mem({("test", "conv1"): (0.1, 0.2, 0.2)}))) == \
        ["partly"]
    # generalizing error bars overlap the memorizing ones: the headline fails
    assert _statuses(memorization.check(_mem({("test", "conv2"): (0.45, 0.47, 0.5)}))) == \
        ["does not hold"]
    # a net did not fit its labels: not a valid comparison
    assert _statuses(memorization.check(_mem(converged=False))) == ["does not hold"]


# ---------------------------------------------------------------------------------------------
# width (C5, C6)
# ---------------------------------------------------------------------------------------------

def _width(trained, init, acc=(0.80, 0.85, 0.90)):
    """``trained`` / ``init``: layer -> mean within-group distance per width."""
    cfg = width.Config(widths=(8, 10, 12), n_seeds=2)
    rows = []
    for state, values in (("trained", trained), ("init", init)):
        for layer, ds in values.items():
            for w, d in zip(cfg.widths, ds, strict=True):
                rows.append({"width": w, "layer": layer, "state": state, "i": 0, "j": 1,
                             "distance": d})
    nets = pd.DataFrame({"width": [w for w in cfg.widths for _ in range(2)],
                         "seed": [0, 1] * 3, "test_acc": [a for a in acc for _ in range(2)],
                         "train_acc": [1.0] * 6, "converged": [True] * 6})
    return width.Result(config=cfg, nets=nets, distances=pd.DataFrame(rows))


FALLING, FLAT_INIT = (0.5, 0.4, 0.3), (0.6, 0.6, 0.59)


def test_width_check_holds_partly_and_fails():
    good = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT})
    assert _statuses(width.check(good)) == ["holds", "holds"]
    rising = _width({"conv4": FALLING, "logits": (0.3, 0.35, 0.4)},
                    {"conv4": FLAT_INIT, "logits": FLAT_INIT})
    assert _statuses(width.check(rising)) == ["partly", "partly"]
    # the control at initialization falls as much as the trained distance: not training's work
    control = _width({"conv4": FALLING, "logits": FALLING},
                     {"conv4": (0.6, 0.4, 0.2), "logits": (0.6, 0.4, 0.2)})
    assert _statuses(width.check(control)) == ["does not hold", "does not hold"]


def test_width_check_c6_needs_a_significant_correlation():
    # falls with width, but accuracy does not follow: Spearman passes, Pearson does not
    res = _width({"conv4": FALLING, "logits": FALLING}, {"conv4": FLAT_INIT, "logits": FLAT_INIT},
                 acc=(0.85, 0.80, 0.86))
    c5, c6 = width.check(res)
    assert (c5.status, c6.status) == ("holds", "does not hold")
    assert any(c.name.startswith("Pearson r") and c.passed is False for c in c6.criteria)


# ---------------------------------------------------------------------------------------------
# learning_rate (C7)
# ---------------------------------------------------------------------------------------------

def _lr(**changes):
    cfg = learning_rate.Config(learning_rates=(0.01, 0.1, 1.0), n_seeds=2, max_clusters=3)
    nets = pd.DataFrame({"net": range(6), "lr": [0.01, 0.01, 0.1, 0.1, 1.0, 1.0],
                         "seed": range(6), "test_acc": [0.7, 0.72, 0.85, 0.86, 0.86, 0.87],
                         "train_acc": [0.8] * 6, "converged": [True] * 6,
                         "cluster": [1, 1, 2, 2, 2, 2]})
    fields = dict(config=cfg, nets=nets, distances=np.zeros((6, 6)), linkage=np.zeros((5, 4)),
                  silhouettes={2: 0.4, 3: 0.3}, n_clusters=2, ari=0.57, ari_at_n_lrs=1.0,
                  spearman=0.8, spearman_p=1e-4, lr_consistent=1.0, lr_contiguous=True,
                  eligible=(2, 3), within_lr=0.1, between_lr=0.3)
    return learning_rate.Result(**{**fields, **changes})


def test_learning_rate_check_holds_partly_and_fails():
    assert _statuses(learning_rate.check(_lr())) == ["holds"]
    assert _statuses(learning_rate.check(_lr(silhouettes={2: 0.2, 3: 0.3}))) == ["partly"]
    assert _statuses(learning_rate.check(_lr(lr_contiguous=False))) == ["partly"]
    assert _statuses(learning_rate.check(_lr(spearman_p=0.02))) == ["partly"]
    assert _statuses(learning_rate.check(_lr(within_lr=0.3))) == ["partly"]
    assert _statuses(learning_rate.check(_lr(spearman=0.4, lr_consistent=2 / 3))) == \
        ["does not hold"]


def test_learning_rate_check_reports_the_accuracy_spread_without_judging_it():
    (claim,) = learning_rate.check(_lr())
    report = [c for c in claim.criteria if c.passed is None]
    assert len(report) == 1 and report[0].measured == pytest.approx(0.86 - 0.71)


# ---------------------------------------------------------------------------------------------
# rnn_dynamics (C8, C2)
# ---------------------------------------------------------------------------------------------

_STEPS = (0, 1, 10, 100, 1000)
BOTTOM_UP = {1: (0.5, 0.2, 0.05), 2: (0.6, 0.3, 0.1), 3: (0.8, 0.5, 0.2)}  # at steps 1, 10, 100


def _rnn(pwcca, mean_cca, shares_below=(0.0, 0.25, 0.0)):
    rows = []
    for measure, curves in (("PWCCA", pwcca), ("mean CCA", mean_cca), ("cosine", pwcca),
                            ("Euclidean", pwcca)):
        for layer, values in curves.items():
            for step, d in zip(_STEPS, (1.0, *values, 0.0), strict=True):
                rows.append({"step": step, "epoch": step / 500, "layer": layer,
                             "measure": measure, "distance": d})
    spectra = []
    for layer, share in zip((1, 2, 3), shares_below, strict=True):
        rho = [0.5] * int(share * 8) + [0.95] * (8 - int(share * 8))
        spectra += [{"step": 100, "layer": layer, "index": i, "rho": r}
                    for i, r in enumerate(rho)]
    history = pd.DataFrame({"step": [0, 80, 1000], "epoch": [0, 0.16, 2],
                            "valid_ppl": [30.0, 10.4, 10.0], "valid_loss": [3.4, 2.34, 2.3],
                            "train_loss": [3.4, 2.3, 2.2]})
    return rnn_dynamics.Result(
        config=rnn_dynamics.Config(), distances=pd.DataFrame(rows),
        spectra=pd.DataFrame(spectra), history=history, steps=_STEPS, steps_per_epoch=500.0,
        metrics={"valid_ppl": 10.0}, n_samples=10000, train_seconds=1.0)


def test_rnn_dynamics_check_c8_holds_partly_and_fails():
    shifted = {k: tuple(v + 0.5 for v in vs) for k, vs in BOTTOM_UP.items()}
    assert _statuses(rnn_dynamics.check(_rnn(BOTTOM_UP, shifted)))[0] == "holds"
    # mean CCA separates the layers as clearly as PWCCA (same curves): partly
    assert _statuses(rnn_dynamics.check(_rnn(BOTTOM_UP, BOTTOM_UP)))[0] == "partly"
    # ordered on average, but layers 1 and 2 swap at two of three checkpoints: partly
    swapped = {1: (0.5, 0.31, 0.11), 2: (0.6, 0.3, 0.1), 3: (0.8, 0.5, 0.2)}
    c8 = rnn_dynamics.check(_rnn(swapped, shifted))[0]
    assert c8.status == "partly"
    assert c8.criteria[1].measured == pytest.approx(1 / 3) and c8.criteria[1].passed is False
    top_down = {1: BOTTOM_UP[3], 2: BOTTOM_UP[2], 3: BOTTOM_UP[1]}
    assert _statuses(rnn_dynamics.check(_rnn(top_down, shifted)))[0] == "does not hold"


def test_rnn_dynamics_check_c2_holds_or_fails():
    _, c2 = rnn_dynamics.check(_rnn(BOTTOM_UP, BOTTOM_UP))
    assert c2.status == "holds" and "step 100" in c2.criteria[0].name  # first step >= 80
    _, c2 = rnn_dynamics.check(_rnn(BOTTOM_UP, BOTTOM_UP, shares_below=(0.0, 0.125, 0.0)))
    assert c2.status == "does not hold"  # there is no "partly" for C2 here


# ---------------------------------------------------------------------------------------------
# rnn_timesteps (C9)
# ---------------------------------------------------------------------------------------------

def _timesteps(trained, early, late, toy_a0=0.0):
    """``trained``: PWCCA distance curve over j = 0..3 (every layer the same); ``early`` and
    ``late``: the repeated-input curves; floors 0.5."""
    cfg = rnn_timesteps.Config(window=4, toy_blend=(0.0, 1.0))
    layers = (1, 2)
    curves, floors = [], []
    for model, curve in (("trained", trained), ("untrained", (0.6, 0.6, 0.3, 0.0))):
        for layer in layers:
            for j, d in enumerate(curve):
                curves.append({"model": model, "layer": layer, "j": j, "measure": "PWCCA",
                               "distance": d})
            floors.append({"model": model, "layer": layer, "floor": "permuted rows",
                           "measure": "PWCCA", "n": 100, "distance": 0.5})
    toy = []
    for a, pw, coord in ((0.0, toy_a0, 0.3), (1.0, 0.2, 0.3)):
        for j in range(4):
            for measure, d in (("PWCCA", pw if j < 3 else 0.0), ("mean CCA", 0.0),
                               ("cosine", coord if j < 3 else 0.0),
                               ("Euclidean", coord if j < 3 else 0.0)):
                toy.append({"a": a, "j": j, "measure": measure, "distance": d})
    repeats = [{"context": context, "layer": layer, "j": j, "measure": "PWCCA", "distance": d}
               for context, curve in (("early", early), ("late", late)) for layer in layers
               for j, d in enumerate(curve)]
    return rnn_timesteps.Result(
        config=cfg, curves=pd.DataFrame(curves), floors=pd.DataFrame(floors),
        toy=pd.DataFrame(toy), repeats=pd.DataFrame(repeats), repeat_floors=pd.DataFrame(),
        n_windows=1000, hidden_size=64, repeat_token="e", valid_ppl=5.0)


LATE = (0.6, 0.55, 0.3, 0.0)  # above 0.9 x floor until j = 1: onset 2 = half the window
REP_LOW, REP_HIGH = (0.1, 0.1, 0.1, 0.0), (0.4, 0.4, 0.4, 0.0)


def test_rnn_timesteps_check_holds_partly_and_fails():
    assert _statuses(rnn_timesteps.check(_timesteps(LATE, REP_LOW, REP_HIGH))) == ["holds"]
    assert _statuses(rnn_timesteps.check(_timesteps(LATE, REP_HIGH, REP_LOW))) == ["partly"]
    early_onset = (0.6, 0.3, 0.3, 0.0)  # onset at j = 1, before half the window
    assert _statuses(rnn_timesteps.check(_timesteps(early_onset, REP_LOW, REP_HIGH))) == \
        ["partly"]
    above_floor = (0.6, 0.6, 0.55, 0.0)  # at j = w - 2 still above the floor
    assert _statuses(rnn_timesteps.check(_timesteps(above_floor, REP_LOW, REP_HIGH))) == \
        ["partly"]
    assert _statuses(rnn_timesteps.check(_timesteps(early_onset, REP_HIGH, REP_LOW))) == \
        ["does not hold"]


def test_rnn_timesteps_sanity_checks_the_toy_control():
    assert all(c.passed for c in rnn_timesteps.sanity_checks(_timesteps(LATE, REP_LOW,
                                                                         REP_HIGH)))
    bad = rnn_timesteps.sanity_checks(_timesteps(LATE, REP_LOW, REP_HIGH, toy_a0=0.01))
    assert [c.passed for c in bad] == [False, True, True, True]


# ---------------------------------------------------------------------------------------------
# The notebooks use the checks and decide nothing themselves
# ---------------------------------------------------------------------------------------------

CHAPTERS = ("signal_noise", "cnn_dynamics", "memorization", "width", "learning_rate",
            "rnn_dynamics", "rnn_timesteps")


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
