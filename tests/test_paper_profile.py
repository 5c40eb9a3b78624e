"""The paper profile: every chapter's paper config is valid and commented with its source in
the paper; the new architectures (ResNet, the paper's LSTM LM sizes) train and capture; the
plan counts the networks and times a few steps without training anything."""

import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from _engine_data import N_TRAIN, activate

from cca_lib import book as bookbuild
from cca_lib import capture, models, training
from cca_lib.book import plan

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = bookbuild.toc_chapters(ROOT / "_toc.yml")


@pytest.fixture
def env(tmp_path, monkeypatch):
    return activate(tmp_path, monkeypatch)


@pytest.mark.parametrize("name", CHAPTERS)
def test_paper_config_is_valid_and_each_value_cites_the_paper(name):
    path = ROOT / "params" / "paper" / f"{name}.yaml"
    assert path.is_file(), path
    own = yaml.safe_load(path.read_text()) or {}
    params = bookbuild.load_params(ROOT, "paper", name)
    module = bookbuild.chapter_module(name)
    if module is not None:
        cls = module.Config
        config = cls.from_params(params)  # constructs: every check passes
        defaults = cls.defaults()
        converted = cls._convert(own)
        same = [k for k in own if converted[k] == defaults[k]]
        assert not same, f"params/paper/{name}.yaml repeats defaults: {same}"
        assert isinstance(config, cls)
    # each value carries a comment saying where in the paper it comes from
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            comment = line.split("#", 1)[1] if "#" in line else ""
            if not comment:  # the comment block right above the value
                j = i
                while j > 0 and lines[j - 1].startswith("#"):
                    j -= 1
                comment = " ".join(lines[j:i])
            assert re.search(r"paper (Sec|Figs?|App)", comment), (name, line)
            assert not re.search(r"\w/\w", comment), f"{name}: cite the paper, not a file"


def test_paper_profile_sets_the_papers_setups():
    width = bookbuild.load_params(ROOT, "paper", "width")
    assert len(width["widths"]) == 13 and width["n_seeds"] == 5
    lr = bookbuild.load_params(ROOT, "paper", "learning_rate")
    assert len(lr["learning_rates"]) * lr["n_seeds"] == 200
    for name in ("width", "learning_rate", "memorization"):
        p = bookbuild.load_params(ROOT, "paper", name)
        assert (p["arch"], p["optimizer"], p["batch_size"], p["epochs"], p["dataset"]) == \
            ("paper", "adam", 32, 100.0, "cifar-10")
    from cca_lib.experiments import width as width_exp

    net = width_exp.Config.from_params(width).train_config(64, 0)
    assert models.cnn_layer_widths(net.width, arch=net.arch) == {
        **{f"conv{i}": c for i, c in enumerate(
            (64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512), start=1)}, "logits": 10}
    assert (net.lr, net.optimizer) == (0.001, "adam")
    assert bookbuild.load_params(ROOT, "paper", "memorization")["n_nets"] == 5
    rnn = bookbuild.load_params(ROOT, "paper", "rnn_dynamics")
    from cca_lib.experiments import rnn_dynamics

    lstm = rnn_dynamics.Config.from_params(rnn)
    assert (lstm.corpus, lstm.n_layers, lstm.hidden_size, lstm.epochs) == ("ptb", 3, 1150, 500.0)


def test_resnet_layout_and_layers():
    net = models.make_cnn(16, arch="resnet", in_channels=3)
    assert net.layer_names == ("conv1", *(f"block{i}" for i in range(1, 10)), "logits")
    assert net.layer_widths() == models.cnn_layer_widths(16, arch="resnet")
    assert sum(p.numel() for p in net.parameters()) == 272_474  # ResNet-20's 0.27M
    outs = net.eval().forward_layers(torch.randn(2, 3, 32, 32))
    assert outs["block9"].shape == (2, 64, 8, 8) and outs["logits"].shape == (2, 10)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(x), net.forward_layers(x)["logits"])
    assert models.make_cnn(4, arch="resnet", depth=2).layer_names[-2] == "block6"
    with pytest.raises(ValueError, match="depth"):
        models.make_cnn(4, arch="resnet", depth=0)


def test_resnet_trains_one_step_and_captures_its_layers(env):
    cfg = training.CNNTrainConfig(arch="resnet", width=4, train_size=N_TRAIN, batch_size=32,
                                  steps=1, eval_size=None, threads=1, optimizer="adam", lr=1e-3)
    run = training.train(cfg, progress=False)
    assert run.steps == (0, 1)
    before, after = run.state_dict(0), run.state_dict(1)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    probe = torch.randn(20, 1, 12, 12)
    acts = capture.capture_run(run, None, probe)
    assert list(acts) == list(run.build_model().layer_names)
    assert acts["block9"].shape == (20, 16) and acts["logits"].shape == (20, 10)


def test_paper_lstm_trains_one_step_and_captures_its_layers(env):
    sizes = models.LM_PRESETS["awd-lstm-lm"]
    assert (sizes["embed_dim"], sizes["hidden_size"], sizes["n_layers"]) == (400, 1150, 3)
    lm = models.make_lm("awd-lstm-lm", vocab_size=50)
    assert lm.layer_widths() == {"lstm1": 1150, "lstm2": 1150, "lstm3": 400}
    assert lm.logits.weight is lm.embedding.weight
    assert models.make_lm("awd-lstm-lm-5", vocab_size=50).n_layers == 5
    with pytest.raises(ValueError, match="preset"):
        models.make_lm("gpt", vocab_size=50)
    cfg = training.LMTrainConfig(corpus="ptb", **sizes, batch_size=2, seq_len=8, steps=1,
                                 eval_tokens=64, eval_streams=2, threads=1)
    run = training.train(cfg, progress=False)
    assert run.steps == (0, 1)
    ids = torch.randint(0, run.model_kwargs["vocab_size"], (3, 6))
    acts = capture.capture_run(run, None, ids)
    assert {k: v.shape for k, v in acts.items()} == {
        "lstm1": (3, 6, 1150), "lstm2": (3, 6, 1150), "lstm3": (3, 6, 400)}


def test_sample_macs_count_the_layers():
    cfg = training.CNNTrainConfig(dataset="cifar-10", arch="paper", width=64)
    macs = plan.sample_macs(cfg)
    # by hand: 3x3 convs at 32, 32, 16, 16, 16, 8, 8, 8, 4, 4, 4 pixels a side, and the logits
    chans = (3, 64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512)
    sides = (32, 32, 16, 16, 16, 8, 8, 8, 4, 4, 4)
    expect = sum(s * s * 9 * a * b for s, a, b in zip(sides, chans[:-1], chans[1:], strict=True))
    assert macs == expect + 512 * 10
    lm = training.LMTrainConfig(corpus="ptb", embed_dim=4, hidden_size=8, n_layers=2)
    assert plan.sample_macs(lm) == 4 * 8 * (4 + 8) + 4 * 8 * (8 + 8) + 8 * 10_000
    assert plan.train_steps(cfg.__class__(dataset="cifar-10", batch_size=32, epochs=2.0,
                                          train_size=None)) == 2 * (50_000 // 32)


def test_plan_counts_networks_and_times_steps(capsys):
    rows = plan.plan(ROOT, "paper", budget_s=0, reference="cheapest", timing_batch=1)
    by = {r.chapter: r for r in rows}
    assert by["width"].networks == 65 and by["learning_rate"].networks == 200
    assert by["memorization"].networks == 10 and by["rnn_dynamics"].networks == 3
    assert by["signal_noise"].networks == 0 and by["rnn_timesteps"].networks == 0
    for r in rows:
        if r.networks:
            assert math.isfinite(r.seconds) and r.seconds > 0, r
            assert "s/step" in r.reference
    text = plan.format_plan(rows, "paper")
    assert f"{sum(r.networks for r in rows)} networks to train" in text
    with pytest.raises(ValueError, match="reference"):
        plan.plan(ROOT, "paper", reference="best")


def test_bookbuild_plan_option_trains_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CCA_BOOK_DATA_DIR", str(tmp_path / "data"))
    bookbuild.main(["--profile", "paper", "--plan", "--only", "cnn_dynamics", "--root",
                    str(ROOT)])
    out = capsys.readouterr().out
    assert "3 networks to train" in out and "cnn_dynamics" in out
    assert not (tmp_path / "data" / "cache" / "runs").exists()
