"""Engine: training runs (CNN and LSTM LM), checkpoints, history, convergence reports."""

import dataclasses
import math

import pytest
import torch
from _engine_data import N_TRAIN, activate

from cca_lib import training


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


def tiny_cnn(**kw):
    base = dict(width=4, train_size=N_TRAIN, batch_size=32, epochs=4, lr=0.05, eval_size=None,
                log_checkpoints=3, threads=1)
    base.update(kw)
    return training.CNNTrainConfig(**base)


def tiny_lm(**kw):
    base = dict(corpus="ptb", embed_dim=8, hidden_size=16, n_layers=2, batch_size=8, seq_len=12,
                steps=200, lr=2e-2, eval_tokens=None, eval_streams=4, checkpoints=(10, 30),
                threads=1)
    base.update(kw)
    return training.LMTrainConfig(**base)


def test_checkpoint_steps():
    assert training.checkpoint_steps(100, 0) == (0, 100)
    steps = training.checkpoint_steps(1000, 5)
    assert steps[0] == 0 and steps[1] == 1 and 500 in steps and steps[-1] == 1000
    assert list(steps) == sorted(set(steps))
    assert 7 in training.checkpoint_steps(10, 0, extra=[7, 99], include_zero=False)
    with pytest.raises(ValueError, match="total"):
        training.checkpoint_steps(0)


def test_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        training.CNNTrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="train_size"):
        training.CNNTrainConfig(train_size=10, batch_size=128)
    with pytest.raises(ValueError, match="schedule"):
        training.LMTrainConfig(schedule="step")
    with pytest.raises(ValueError, match="unknown dataset"):
        training.CNNTrainConfig(dataset="imagenet")
    with pytest.raises(TypeError, match="config must be"):
        training.train({"lr": 1})
    cfg = training.CNNTrainConfig(checkpoints=[5, 3])
    assert cfg.checkpoints == (5, 3)
    assert training.run_key(cfg) == training.run_key(training.CNNTrainConfig(checkpoints=(5, 3)))
    assert training.run_key(cfg) != training.run_key(training.CNNTrainConfig(checkpoints=(5,)))


def test_run_key_holds_threads_device_and_torch_version(monkeypatch):
    cfg = training.CNNTrainConfig()

    def key(**kw):
        return training.run_key(dataclasses.replace(cfg, **kw))

    one, two = key(threads=1), key(threads=2)
    assert one != two  # reductions are split by thread: other weights
    old = torch.get_num_threads()
    try:  # None is keyed as the count training then uses
        torch.set_num_threads(1)
        assert training.training_threads(cfg) == 1 and key(threads=None) == one
        torch.set_num_threads(2)
        assert training.training_threads(cfg) == 2 and key(threads=None) == two
    finally:
        torch.set_num_threads(old)
    cpu, cuda = key(threads=1, device="cpu"), key(threads=1, device="cuda")
    assert cpu != cuda and cuda == key(threads=1, device="cuda:1")  # the device type counts
    assert key(threads=1, device="auto") == key(
        threads=1, device=training.resolve_device("auto").type)
    lm = training.LMTrainConfig(threads=1)
    assert training.run_key(lm) != training.run_key(dataclasses.replace(lm, threads=3))
    monkeypatch.setattr(torch, "__version__", "0.0.1+other")
    assert key(threads=1, device="cpu") != cpu  # another torch release: another run


def test_trained_result_carries_the_resolved_key(env):
    cfg = tiny_cnn(threads=None, epochs=1, log_checkpoints=0)
    r = training.train(cfg, progress=False)
    resolved = dataclasses.replace(cfg, threads=torch.get_num_threads(),
                                   device=training.resolve_device(cfg.device).type)
    assert r.key == training.run_key(resolved) and r.path.name == r.key
    assert training.train(resolved, progress=False).from_cache  # the same run
    other = 2 if resolved.threads == 1 else 1
    assert not training.train(dataclasses.replace(resolved, threads=other),
                              progress=False).from_cache


def test_cnn_training_lowers_loss_and_keeps_checkpoints(env):
    cfg = tiny_cnn()
    r = training.train(cfg, progress=False, cache=False)
    total = 4 * (N_TRAIN // 32)
    assert r.steps == training.checkpoint_steps(total, 3)
    assert r.converged and r.reason == ""
    h = r.history
    assert {"step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc"} <= set(h)
    assert h["test_loss"].iloc[-1] < h["test_loss"].iloc[0] - 0.3
    assert r.metrics["train_acc"] > 0.5 and r.metrics["test_acc"] > 0.3
    m0, mT = r.load(0), r.load()
    assert not mT.training
    w0, wT = m0.conv1[0].weight, mT.conv1[0].weight
    assert not torch.equal(w0, wT)
    with pytest.raises(ValueError, match="no checkpoint at step=7"):
        r.load(7)
    assert math.isclose(h["lr"].iloc[0], 0.05)


def test_random_labels_and_memorisation_target_reported(env):
    r = training.train(tiny_cnn(label_seed=1, epochs=1, target_train_acc=0.99), progress=False,
                       cache=False)
    assert not r.converged and "below target 0.99" in r.reason


def test_stalled_and_diverged_runs_are_reported(env):
    stalled = training.train(tiny_cnn(lr=1e-7, epochs=1), progress=False, cache=False)
    assert not stalled.converged and "stalled" in stalled.reason
    diverged = training.train(tiny_cnn(lr=1e12, epochs=2, schedule="constant",
                                       weight_decay=0.0), progress=False, cache=False)
    assert not diverged.converged
    assert "non-finite" in diverged.reason or "stalled" in diverged.reason


def test_lm_training_lowers_perplexity(env):
    r = training.train(tiny_lm(), progress=False, cache=False)
    h = r.history
    assert r.steps == (0, 10, 30, 200)
    assert {"valid_loss", "valid_ppl", "train_ppl"} <= set(h)
    assert h["valid_ppl"].iloc[-1] < 0.6 * h["valid_ppl"].iloc[0]
    assert r.converged, r.reason
    assert r.metrics["valid_loss"] < r.metrics["unigram_valid_loss"]
    lm = r.load(30)
    assert lm.layer_names == ("lstm1", "lstm2")


def test_lm_char_level_and_unlearnt_model_reported(env):
    r = training.train(tiny_lm(corpus="tinyshakespeare", steps=3, lr=1e-6, checkpoints=()),
                       progress=False, cache=False)
    assert not r.converged and "unigram" in r.reason


def test_train_many_and_seeds(env):
    a, b = training.train_many([tiny_cnn(epochs=1), tiny_cnn(epochs=1, seed=1)],
                               progress=False, cache=False)
    assert not torch.equal(a.state_dict(0)["conv1.0.weight"], b.state_dict(0)["conv1.0.weight"])
    c = training.train(tiny_cnn(epochs=1, data_seed=5), progress=False, cache=False)
    assert torch.equal(a.state_dict(0)["conv1.0.weight"], c.state_dict(0)["conv1.0.weight"])
    assert not torch.equal(a.state_dict()["conv1.0.weight"], c.state_dict()["conv1.0.weight"])
    assert a.summary()["width"] == 4


def test_bf16_autocast_and_contiguous_layout_train(env):
    r = training.train(tiny_cnn(bf16=True, channels_last=False, epochs=2, log_checkpoints=0),
                       progress=False, cache=False)
    assert r.steps == (0, 2 * (N_TRAIN // 32))
    assert r.history["test_loss"].iloc[-1] < r.history["test_loss"].iloc[0]
    assert r.load().conv1[0].weight.dtype == torch.float32
    assert training.resolve_device("cpu").type == "cpu"


def test_stop_at_train_acc_ends_at_an_epoch_boundary(env):
    spe = N_TRAIN // 32
    r = training.train(tiny_cnn(epochs=30, stop_at_train_acc=0.6, schedule="constant"),
                       progress=False, cache=False)
    assert r.final_step % spe == 0 and r.final_step < 30 * spe
    assert r.history["step"].iloc[-1] == r.final_step
    assert training.CNNTrainConfig(dataset="fashion_mnist").dataset == "fashion-mnist"


def test_total_steps_counts_the_steps_training_takes(env):
    cnn = tiny_cnn(epochs=1.5, log_checkpoints=0)
    assert training.total_steps(cnn) == math.ceil(1.5 * (N_TRAIN // 32))
    assert training.train(cnn, progress=False, cache=False).final_step == \
        training.total_steps(cnn)
    assert training.total_steps(tiny_lm()) == 200  # steps given
    lm = tiny_lm(steps=None, epochs=0.25, checkpoints=())
    assert training.train(lm, progress=False, cache=False).final_step == \
        training.total_steps(lm)
    with pytest.raises(ValueError, match="exceeds"):
        training.total_steps(tiny_cnn(train_size=N_TRAIN + 32))
    with pytest.raises(TypeError, match="config must be"):
        training.total_steps({"steps": 3})


def test_non_finite_loss_stops_both_loops_at_that_step(env):
    cnn = training.train(tiny_cnn(lr=1e20, epochs=2, schedule="constant", weight_decay=0.0),
                         progress=False, cache=False)
    assert not cnn.converged and "non-finite (nan) at step 2" in cnn.reason
    assert cnn.steps == (0, 1) and list(cnn.history["step"]) == [0, 1]
    assert cnn.metrics == {"steps": 1.0}
    lm = training.train(tiny_lm(optimizer="sgd", lr=1e38, grad_clip=None, schedule="constant",
                                steps=40), progress=False, cache=False)
    assert not lm.converged and "non-finite" in lm.reason and lm.steps == (0,)
    assert set(lm.metrics) == {"steps", "unigram_valid_loss", "unigram_valid_ppl"}


def test_history_columns_and_metrics_of_each_loop(env):
    cnn = training.train(tiny_cnn(epochs=1, log_checkpoints=0), progress=False, cache=False)
    assert list(cnn.history) == ["step", "epoch", "lr", "train_loss", "train_acc",
                                 "test_loss", "test_acc"]
    assert list(cnn.metrics) == ["steps", "train_loss", "train_acc", "test_loss", "test_acc"]
    assert math.isnan(cnn.history["train_loss"].iloc[0])
    lm = training.train(tiny_lm(steps=20, checkpoints=()), progress=False, cache=False)
    assert list(lm.history) == ["step", "epoch", "lr", "train_loss", "train_ppl", "train_acc",
                                "valid_loss", "valid_ppl", "valid_acc"]
    assert list(lm.metrics) == ["steps", "unigram_valid_loss", "unigram_valid_ppl",
                                "valid_loss", "valid_ppl", "valid_acc", "train_loss"]
    assert lm.metrics["train_loss"] == lm.history["train_loss"].iloc[-1]
    assert lm.history["epoch"].iloc[-1] == 20 / training.total_steps(
        tiny_lm(steps=None, epochs=1.0, checkpoints=()))


def test_lm_with_a_huge_or_nan_validation_loss_is_reported_not_raised(env, monkeypatch):
    # weights blown up but the training loss still finite: exp(valid loss) overflows a float
    huge = training.train(tiny_lm(optimizer="sgd", lr=1e10, grad_clip=None, schedule="constant",
                                  steps=40), progress=False, cache=False)
    assert huge.metrics["valid_loss"] > 710 and huge.metrics["valid_ppl"] == math.inf
    assert not huge.converged and "unigram" in huge.reason
    monkeypatch.setattr(training, "evaluate_lm", lambda *a, **k: (math.nan, 0.0))
    nan = training.train(tiny_lm(steps=5, checkpoints=()), progress=False, cache=False)
    assert math.isnan(nan.metrics["valid_loss"])
    assert not nan.converged and "no better than a unigram" in nan.reason


def test_step_half_schedule_decays_by_half_then_stays():
    cfg = training.LMTrainConfig(schedule="step_half", final_lr_frac=0.1)
    f = training._lr_lambda(cfg, 100)
    assert f(0) == 1.0
    assert f(25) == pytest.approx(0.55)  # half-way through the decay
    assert [f(s) for s in (50, 75, 100)] == pytest.approx([0.1, 0.1, 0.1])
    cosine = training._lr_lambda(dataclasses.replace(cfg, schedule="cosine"), 100)
    assert cosine(50) == pytest.approx(0.55) and cosine(100) == pytest.approx(0.1)


def test_step_half_schedule_on_a_cnn_config():
    total, f = 100, 0.2  # an even total: the decay ends at step 50
    half = training._lr_lambda(tiny_cnn(schedule="step_half", final_lr_frac=f), total)
    assert half(0) == pytest.approx(1.0)
    assert half(25) == pytest.approx(f + (1 - f) * 0.5 * (1 + math.cos(math.pi / 2)))
    for step in (50, 51, 75, 100, 120):
        assert half(step) == pytest.approx(f)
    values = [half(s) for s in range(51)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))  # strictly decaying
    # the other schedules are unchanged
    cos = training._lr_lambda(tiny_cnn(schedule="cosine", final_lr_frac=f), total)
    assert cos(50) == pytest.approx(f + (1 - f) * 0.5) and cos(100) == pytest.approx(f)
    assert training._lr_lambda(tiny_cnn(schedule="constant"), total)(60) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        tiny_cnn(schedule="half-cosine")
