"""Each chapter's ``check(result)`` on small hand-built results that pass, partly pass and fail.

The results are built by hand (no training, no data): each test sets the numbers a verdict rule
reads and asserts the status the rule gives, so a changed threshold or rule fails here.
"""

import re

import numpy as np
import pandas as pd
import pytest

from cca_lib import book
from cca_lib.claims import STATUSES
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

def _cnn(shares_below, s_sims, b_sims):
    """Layers with the given share of coefficients below 0.9 at t* and S/B similarities at
    (t_early, T)."""
    layers = tuple(f"conv{i + 1}" for i in range(len(shares_below)))
    steps = (0, 10, 20, 40)
    spectra = []
    for layer, share in zip(layers, shares_below, strict=True):
        rho = [0.5] * int(round(share * 20)) + [0.95] * (20 - int(round(share * 20)))
        spectra += [{"layer": layer, "step": 10, "index": i, "rho": r} for i, r in enumerate(rho)]
    sb = []
    for layer, s, b in zip(layers, s_sims, b_sims, strict=True):
        for subset, sims in (("S", s), ("B", b)):
            for step, v in zip((10, 20, 40), (sims[0], 1.0, sims[1]), strict=True):
                sb.append({"layer": layer, "step": step, "subset": subset, "k": 4,
                           "similarity": v})
    return cnn_dynamics.Result(
        config=cnn_dynamics.Config(), layers=layers, widths=dict.fromkeys(layers, 20),
        steps=steps, history=pd.DataFrame(), final_acc=0.9, conv_step=10, conv_ckpt=10,
        early_step=10, half_step=20, spectra=pd.DataFrame(spectra), sb=pd.DataFrame(sb),
        convergence=pd.DataFrame())


GOOD_S, GOOD_B = (0.95, 0.95), (0.5, 0.6)  # B loses 0.4 >= 3 x 0.05, margin 0.4


def test_cnn_dynamics_check_c2_holds_partly_and_fails():
    def c2(shares):
        n = len(shares)
        return _statuses(cnn_dynamics.check(_cnn(shares, [GOOD_S] * n, [GOOD_B] * n)))[0]

    assert c2([0.25, 0.5, 0.0, 0.0]) == "holds"  # half of the layers
    assert c2([0.0, 0.3, 0.0]) == "partly"  # one layer of three
    assert c2([0.2, 0.1, 0.0]) == "does not hold"


def test_cnn_dynamics_check_c3_holds_partly_and_fails():
    def c3(s, b):
        return _statuses(cnn_dynamics.check(_cnn([0.5] * len(s), s, b)))[1]

    assert c3([GOOD_S, GOOD_S], [GOOD_B, GOOD_B]) == "holds"
    assert c3([GOOD_S, (0.8, 0.95)], [GOOD_B, GOOD_B]) == "partly"  # S falls below 0.85
    assert c3([GOOD_S, GOOD_S], [GOOD_B, (0.9, 0.9)]) == "partly"  # margin 0.05 < 0.1
    # B loses 0.2, less than 3 x S's 0.1
    assert c3([GOOD_S, (0.95, 0.9)], [GOOD_B, (0.5, 0.8)]) == "partly"
    assert c3([(0.8, 0.95)] * 2, [GOOD_B] * 2) == "does not hold"
    (_, claim) = cnn_dynamics.check(_cnn([0.5], [(0.95, 0.9)], [(0.5, 0.8)]))
    loss = [c for c in claim.criteria if c.name.startswith("similarity B lost")][0]
    assert loss.measured == pytest.approx(0.2) and "(0.300)" in loss.threshold


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
           cka=None):
    """``trained`` / ``init``: layer -> mean within-group distance per width (each pair at it
    +- 0.002, deterministic)."""
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
                         "test_acc": [a + 0.001 * s for a in acc for s in range(seeds)],
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
    # C6 keeps its correlation part only
    control = _width({"conv4": FALLING, "logits": FALLING},
                     {"conv4": FALLING_INIT, "logits": FLAT_INIT})
    assert _statuses(width.check(control)) == ["does not hold", "partly"]
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


def test_width_check_init_slope_interval_and_cka():
    # a small init slope (0.005 per doubling) is within the margin, a larger one is not
    small = tuple(0.6 - 0.005 * np.log2(w / 6) for w in _W)
    large = tuple(0.6 - 0.03 * np.log2(w / 6) for w in _W)
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
