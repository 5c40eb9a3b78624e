"""Engine: CNN family and LSTM language model shapes and layer naming."""

import pytest
import torch

from cca_lib import models


def test_small_cnn_layers_and_shapes():
    torch.manual_seed(0)
    net = models.make_cnn(4)
    assert net.layer_names == ("conv1", "conv2", "conv3", "conv4", "logits")
    assert net.layer_widths() == {"conv1": 4, "conv2": 8, "conv3": 8, "conv4": 16, "logits": 10}
    x = torch.randn(3, 1, 28, 28)
    outs = net.eval().forward_layers(x)
    assert outs["conv1"].shape == (3, 4, 14, 14)
    assert outs["conv2"].shape == (3, 8, 7, 7)
    assert outs["conv4"].shape == (3, 16, 7, 7)
    assert outs["logits"].shape == (3, 10)
    torch.testing.assert_close(outs["logits"], net(x))
    assert (outs["conv3"] >= 0).all()  # recorded after the ReLU


def test_cnn_depth_and_paper_layout():
    assert models.cnn_layout("small", 6) == ((1, 2, 2, 4, 4, 4), (2, 2, 1, 1, 1, 1))
    assert models.cnn_layout("small", 2) == ((1, 2), (2, 2))
    paper = models.make_cnn(64, arch="paper", in_channels=3)
    assert paper.channels == (64, 64, 128, 128, 128, 256, 256, 256, 512, 512, 512)
    tiny = models.make_cnn(2, arch="paper", in_channels=3, num_classes=7)
    outs = tiny.eval().forward_layers(torch.randn(2, 3, 32, 32))
    assert outs["conv11"].shape == (2, 16, 4, 4) and outs["logits"].shape == (2, 7)
    assert len(tiny.layer_names) == 12


def test_cnn_bad_arguments():
    with pytest.raises(ValueError, match="width"):
        models.make_cnn(0)
    with pytest.raises(ValueError, match="arch"):
        models.make_cnn(4, arch="vgg")  # "resnet" is a layout now
    with pytest.raises(ValueError, match="depth"):
        models.make_cnn(4, arch="paper", depth=5)
    with pytest.raises(ValueError, match="equal length"):
        models.ConvNet([4, 8], [1])


def test_lstm_lm_shapes_state_and_layers():
    torch.manual_seed(0)
    lm = models.LSTMLM(30, embed_dim=8, hidden_size=12, n_layers=3).eval()
    ids = torch.randint(0, 30, (4, 7))
    logits, state = lm(ids)
    assert logits.shape == (4, 7, 30)
    assert len(state) == 3 and state[0][0].shape == (1, 4, 12)
    layers, _ = lm.forward_layers(ids)
    assert lm.layer_names == ("lstm1", "lstm2", "lstm3")
    assert {k: tuple(v.shape) for k, v in layers.items()} == {
        f"lstm{i}": (4, 7, 12) for i in (1, 2, 3)}
    torch.testing.assert_close(lm.logits(layers["lstm3"]), logits)
    # running in two halves with the state carried equals one pass
    first, st = lm.forward_layers(ids[:, :3])
    second, _ = lm.forward_layers(ids[:, 3:], st)
    torch.testing.assert_close(torch.cat([first["lstm2"], second["lstm2"]], 1), layers["lstm2"])


def test_lstm_tied_weights_and_bad_arguments():
    lm = models.LSTMLM(20, embed_dim=6, hidden_size=10, n_layers=2, tie_weights=True)
    assert lm.hidden_sizes == (10, 6) and lm.logits.weight is lm.embedding.weight
    with pytest.raises(ValueError, match="hidden_size"):
        models.LSTMLM(20, hidden_size=0)
    with pytest.raises(ValueError, match="dropout"):
        models.LSTMLM(20, dropout=1.0)
    with pytest.raises(ValueError, match="batch, time"):
        lm(torch.zeros(5, dtype=torch.int64))


def test_cnn_layer_widths_match_the_built_nets():
    for kwargs in ({}, {"depth": 6}, {"arch": "paper"}, {"num_classes": 7}):
        assert models.cnn_layer_widths(4, **kwargs) == models.make_cnn(4, **kwargs).layer_widths()
    assert models.cnn_layer_widths(8) == {"conv1": 8, "conv2": 16, "conv3": 16, "conv4": 32,
                                          "logits": 10}
    with pytest.raises(ValueError, match="width"):
        models.cnn_layer_widths(0)
    with pytest.raises(ValueError, match="arch"):
        models.cnn_layer_widths(4, arch="huge")
