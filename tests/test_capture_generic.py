"""capture() on modules the project did not write: hooks, layouts, inputs, errors."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset, WeightedRandomSampler

from cca_lib import capture as cap
from cca_lib import models


def _hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _np(t):
    return t.detach().float().numpy()


# --------------------------------------------------------------------------------------------
# Modules written here (a residual block, a ResNet-18-shaped stack)
# --------------------------------------------------------------------------------------------


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                  nn.Conv2d(c, c, 3, padding=1))
        self.out = nn.ReLU()

    def forward(self, x):
        return self.out(x + self.body(x))


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = Residual(6)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))

    def forward(self, x):
        return self.head(self.block(self.stem(x)))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock layout: one in-place ReLU module used twice."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18's stages (2 BasicBlocks each) and module names, at width ``w`` (64 for the
    real one), for 32x32 inputs."""

    def __init__(self, w=8, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans, cin = (w, 2 * w, 4 * w, 8 * w), w
        for i, c in enumerate(chans, start=1):
            stride = 1 if i == 1 else 2
            self.add_module(f"layer{i}", nn.Sequential(BasicBlock(cin, c, stride),
                                                       BasicBlock(c, c, 1)))
            cin = c
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _warm_bn(model, x):
    """Non-trivial BatchNorm running statistics (a few forward passes in train mode)."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(x)


# --------------------------------------------------------------------------------------------
# Layouts on foreign modules
# --------------------------------------------------------------------------------------------


def test_sequential_conv_layers_in_every_mode():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 5, 3, stride=2),
                        nn.ReLU(), nn.Flatten(), nn.Linear(5 * 3 * 3, 4)).eval()
    x = torch.randn(11, 1, 8, 8)
    with torch.no_grad():
        ref = _np(net[:4](x))  # (11, 5, 3, 3)
        logits = _np(net(x))
    raw = cap.capture(net, x, ["3", "5"], mode="raw", batch_size=4)
    np.testing.assert_allclose(raw["3"], ref, atol=1e-6)
    np.testing.assert_allclose(raw["5"], logits, atol=1e-6)
    means = cap.capture(net, x, "3", batch_size=4)["3"]
    np.testing.assert_allclose(means, ref.mean(axis=(2, 3)), atol=1e-6)
    pos = cap.capture(net, x, "3", mode="positions")["3"]
    assert pos.shape == (11 * 9, 5)
    np.testing.assert_allclose(pos, ref.transpose(0, 2, 3, 1).reshape(-1, 5), atol=1e-6)
    flat = cap.capture(net, x, ["3", "5"], mode="flatten")
    np.testing.assert_allclose(flat["3"], ref.reshape(11, -1), atol=1e-6)
    np.testing.assert_allclose(flat["5"], logits, atol=1e-6)  # 2-D outputs: as is in any mode
    assert all(a.dtype == np.float32 and a.flags.c_contiguous for a in flat.values())
    with pytest.raises(ValueError, match="layers is required"):
        cap.capture(net, x)  # a module that defines no layer_names
    with pytest.raises(ValueError, match="mode must be one of"):
        cap.capture(net, x, "3", mode="pooled")
    assert _hooks(net) == 0


def test_nested_module_with_a_residual_block():
    torch.manual_seed(0)
    net = Nested()
    x = torch.randn(9, 3, 6, 6)
    _warm_bn(net, x)
    net.eval()
    with torch.no_grad():
        s = net.stem(x)
        inner = net.block.body[:3](s)  # after the block's BatchNorm and ReLU
        block = net.block(s)
    acts = cap.capture(net, x, ["block.body.2", "block", "block.out", "head.2"], mode="raw")
    np.testing.assert_allclose(acts["block.body.2"], _np(inner), atol=1e-5)
    np.testing.assert_allclose(acts["block"], _np(block), atol=1e-5)
    np.testing.assert_array_equal(acts["block"], acts["block.out"])  # the block's last module
    assert acts["head.2"].shape == (9, 4)


def test_resnet18_shaped_stack():
    torch.manual_seed(0)
    net = ResNet18(w=8)
    x = torch.randn(20, 3, 32, 32)
    _warm_bn(net, x)
    names = ["relu", "layer1", "layer2.0.downsample", "layer2.1", "layer3.0.bn1", "layer4",
             "avgpool", "fc"]
    acts = cap.capture(net, x, names, batch_size=8)
    assert net.training  # restored
    widths = {"relu": 8, "layer1": 8, "layer2.0.downsample": 16, "layer2.1": 16,
              "layer3.0.bn1": 32, "layer4": 64, "avgpool": 64, "fc": 10}
    assert {k: v.shape for k, v in acts.items()} == {k: (20, c) for k, c in widths.items()}
    net.eval()
    with torch.no_grad():
        h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        l2 = net.layer2(net.layer1(h))
        b = net.layer3[0]
        bn1 = b.bn1(b.conv1(l2))  # the block's relu then clips this tensor in place
        l4 = net.layer4(net.layer3(l2))
    np.testing.assert_allclose(acts["layer4"], _np(l4.mean(dim=(2, 3))), atol=1e-5)
    np.testing.assert_allclose(acts["avgpool"], acts["layer4"], atol=1e-5)
    np.testing.assert_allclose(acts["layer3.0.bn1"], _np(bn1.mean(dim=(2, 3))), atol=1e-5)
    pos = cap.capture(net, x, "layer3.0.bn1", mode="positions")["layer3.0.bn1"]
    assert (pos < 0).any()  # recorded before the in-place ReLU ran on it
    np.testing.assert_allclose(pos, _np(bn1.permute(0, 2, 3, 1).reshape(-1, 32)), atol=1e-5)
    # the block's relu module runs twice per forward pass: its output is ambiguous
    with pytest.raises(ValueError, match="more than once"):
        cap.capture(net, x, "layer1.0.relu")
    assert _hooks(net) == 0


def test_lstm_outputs_first_element_unless_told():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, num_layers=2, batch_first=True)
    x = torch.randn(7, 5, 4)
    with torch.no_grad():
        out, (h, c) = lstm(x)
    acts = cap.capture(lstm, x, "", batch_size=3)  # the module itself: its name is ""
    np.testing.assert_allclose(acts[""], _np(out), atol=1e-6)
    last = cap.capture(lstm, x, "", output=lambda o: o[1][0][-1])  # top layer's final h
    np.testing.assert_allclose(last[""], _np(h[-1]), atol=1e-6)
    np.testing.assert_allclose(last[""], acts[""][:, -1], atol=1e-6)
    np.testing.assert_array_equal(cap.capture(lstm, x, "", output=0, batch_size=3)[""], acts[""])
    # h_n is (num_layers, batch, hidden): not batch first
    with pytest.raises(ValueError, match="batch must be its first axis"):
        cap.capture(lstm, x, "", output=lambda o: o[1][0])
    with pytest.raises(TypeError, match="not a tensor"):
        cap.capture(lstm, x, "", output=1)  # (h, c): a tuple
    with pytest.raises(TypeError, match="output must be"):
        cap.capture(lstm, x, "", output="h")


def test_lstm_in_a_model_with_per_layer_selectors():
    torch.manual_seed(0)

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(30, 5)
            self.rnn = nn.LSTM(5, 8, batch_first=True)
            self.out = nn.Linear(8, 3)

        def forward(self, ids):
            return self.out(self.rnn(self.emb(ids))[0])

    net = Tagger()
    ids = torch.randint(0, 30, (6, 9))
    acts = cap.capture(net, ids, ["rnn", "out"], output={"rnn": lambda o: o[0][:, -1]})
    assert acts["rnn"].shape == (6, 8) and acts["out"].shape == (6, 9, 3)
    seq = cap.capture(net, ids, "rnn")["rnn"]
    assert seq.shape == (6, 9, 8)  # a sequence: kept (n, T, hidden) for the timestep helpers
    np.testing.assert_array_equal(cap.at_timestep(seq, -1), acts["rnn"])
    with pytest.raises(ValueError, match="not captured"):
        cap.capture(net, ids, "rnn", output={"out": 0})


def test_transformer_encoder():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2,
                                                           batch_first=True), 2)
    x = torch.randn(6, 5, 16)
    acts = cap.capture(enc, x, ["layers.0", "layers.1", "layers.0.linear1"], batch_size=4)
    assert acts["layers.1"].shape == (6, 5, 16) and acts["layers.0.linear1"].shape == (6, 5, 32)
    assert enc.training
    enc.eval()
    with torch.enable_grad():  # with gradients: the ordinary (not fused) path
        ref = enc.layers[0](x)
    np.testing.assert_allclose(acts["layers.0"], _np(ref), atol=1e-5)
    # nn.MultiheadAttention uses out_proj's weights but never calls the module
    with pytest.raises(ValueError, match=r"never fired.*out_proj"):
        cap.capture(enc, x, ["layers.0", "layers.0.self_attn.out_proj"])
    assert _hooks(enc) == 0


class FusedInEval(nn.Module):
    """Like nn.TransformerEncoderLayer's fast path: in eval mode without gradients it computes
    with its submodule's weights directly, so the submodule's hooks never fire."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x):
        if not self.training and not torch.is_grad_enabled():
            return torch.relu(nn.functional.linear(x, self.lin.weight, self.lin.bias))
        return self.act(self.lin(x))


def test_a_hook_that_never_fires_raises():
    torch.manual_seed(0)
    net = nn.Sequential(FusedInEval(), nn.Linear(4, 2))
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"\['0.lin'\] produced no output.*fast path"):
        cap.capture(net, x, ["0.lin", "1"])
    assert _hooks(net) == 0 and net.training
    assert cap.capture(net, x, ["0", "1"])["0"].shape == (5, 4)  # the enclosing module works

    class WithUnusedHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(4, 3)
            self.aux = nn.Linear(3, 1)  # not used by forward

        def forward(self, x):
            return self.body(x)

    with pytest.raises(ValueError, match=r"\['aux'\] produced no output"):
        cap.capture(WithUnusedHead(), x, ["body", "aux"])


# --------------------------------------------------------------------------------------------
# Hook contract: copies, removal, modes, names
# --------------------------------------------------------------------------------------------


def test_recorded_output_is_a_copy_an_inplace_op_cannot_change():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(inplace=True), nn.Linear(8, 2))
    x = torch.randn(40, 3)
    with torch.no_grad():
        pre = _np(net[0](x))
    assert (pre < 0).any()
    got = cap.capture(net, x, ["0", "1"])
    np.testing.assert_array_equal(got["0"], pre)  # before the in-place ReLU
    np.testing.assert_array_equal(got["1"], np.maximum(pre, 0))
    # what a hook that keeps the output tensor itself would hold: the ReLU's result
    kept = []
    handle = net[0].register_forward_hook(lambda m, a, o: kept.append(o))
    with torch.no_grad():
        net(x)
    handle.remove()
    assert (kept[0] >= 0).all() and not np.array_equal(_np(kept[0]), pre)


def test_hooks_are_removed_and_modes_restored_on_error():
    torch.manual_seed(0)

    class Breaks(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0
            self.seen = []

        def forward(self, x):
            self.calls += 1
            self.seen.append(self.training)
            if self.calls == 2:
                raise RuntimeError("boom in the second batch")
            return x

    bad = Breaks()
    net = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5), bad, nn.BatchNorm1d(3))
    net.train()
    net[3].eval()  # a mix of modes: each is restored as it was
    x = torch.randn(10, 3)
    with pytest.raises(RuntimeError, match="boom"):
        cap.capture(net, x, ["0", "3"], batch_size=5)
    assert _hooks(net) == 0
    assert bad.seen == [False, False]  # the model ran in eval mode
    assert [m.training for m in net] == [True, True, True, False] and net.training
    # an output that is not batch first, a module used twice: also cleaned up
    twice = nn.ReLU()
    net2 = nn.Sequential(nn.Linear(3, 3), twice, nn.Linear(3, 3), twice)
    with pytest.raises(ValueError, match="more than once"):
        cap.capture(net2, x, ["1", "2"])
    assert _hooks(net2) == 0 and net2.training
    out = cap.capture(nn.Sequential(nn.Linear(3, 3)).eval(), x, "0")
    assert out["0"].shape == (10, 3)


def test_unknown_layer_names_list_close_matches():
    net = ResNet18(w=4)
    close = r"'layer1\.0\.conv': did you mean \[[^]]*'layer1\.0\.conv1'"
    with pytest.raises(ValueError, match=close):
        cap.capture(net, torch.randn(2, 3, 32, 32), ["layer4", "layer1.0.conv"])
    with pytest.raises(ValueError, match="'blocks': no close match"):
        cap.capture(net, torch.randn(2, 3, 32, 32), "blocks")
    with pytest.raises(ValueError, match="more than once"):
        cap.capture(net, torch.randn(2, 3, 32, 32), ["fc", "fc"])
    with pytest.raises(TypeError, match="module names"):
        cap.capture(net, torch.randn(2, 3, 32, 32), [3])
    assert _hooks(net) == 0


# --------------------------------------------------------------------------------------------
# Inputs: tensors, Datasets, DataLoaders
# --------------------------------------------------------------------------------------------


class OnlyImages(Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def test_dataset_and_dataloader_inputs():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    x, y = torch.randn(23, 1, 6, 6), torch.randint(0, 2, (23,))
    ref = cap.capture(net, x, ["1", "3"], mode="positions")
    pairs = TensorDataset(x, y)
    for inputs, kw in ((pairs, {"batch_size": 5}), (OnlyImages(x), {}),
                       (DataLoader(pairs, batch_size=7), {}), (x.numpy(), {"batch_size": 2})):
        got = cap.capture(net, inputs, ["1", "3"], mode="positions", **kw)
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], atol=1e-6, err_msg=str(inputs))
    with pytest.raises(ValueError, match="shuffle=True"):
        cap.capture(net, DataLoader(pairs, batch_size=7, shuffle=True), "1")
    weighted = WeightedRandomSampler(torch.ones(23), 23, generator=torch.Generator())
    with pytest.raises(ValueError, match="at random"):
        cap.capture(net, DataLoader(pairs, batch_size=7, sampler=weighted), "1")
    with pytest.raises(ValueError, match="brings its own batches"):
        cap.capture(net, DataLoader(pairs, batch_size=7), "1", batch_size=7)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        cap.capture(net, x, "1", batch_size=0)
    with pytest.raises(TypeError, match="tensor, a torch Dataset or a DataLoader"):
        cap.capture(net, [x], "1")
    with pytest.raises(TypeError, match="first element is a tensor"):
        cap.capture(net, DataLoader([{"x": x[0]}], batch_size=1), "1")
    with pytest.raises(ValueError, match="no batches"):
        cap.capture(net, DataLoader(TensorDataset(x[:0]), batch_size=4), "1")

    class Ragged(Dataset):  # inputs whose layer outputs differ in shape
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.randn(1, 6 + 2 * i, 6)

    conv = nn.Sequential(nn.Conv2d(1, 2, 3))
    with pytest.raises(ValueError, match="per-input shapes"):
        cap.capture(conv, Ragged(), "0", mode="flatten", batch_size=1)


def test_device_and_samples_per_input():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1))
    x = torch.randn(6, 2, 4, 5)
    pos = cap.capture(net, x, "0", mode="positions", device="cpu")["0"]
    with pytest.raises(ValueError, match="the model is not moved"):
        cap.capture(net, x, "0", device="meta")
    assert cap.samples_per_input(pos, 6) == 20
    assert cap.samples_per_input({"0": pos, "m": pos[:6]}, 6) == {"0": 20, "m": 1}
    idx = cap.input_index(pos, 6)
    assert idx.shape == (120,) and list(np.bincount(idx)) == [20] * 6
    raw = cap.capture(net, x, "0", mode="raw")["0"]
    np.testing.assert_array_equal(pos[idx == 4], raw[4].reshape(3, -1).T)  # image 4's rows
    with pytest.raises(ValueError, match="rows per input"):
        cap.samples_per_input(pos, 7)
    with pytest.raises(ValueError, match="n_inputs"):
        cap.samples_per_input(pos, 0)
    seq = np.zeros((4, 9, 3), np.float32)
    assert cap.samples_per_input(cap.flatten_timesteps(seq), 4) == 9


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_gives_the_cpu_arrays():
    torch.manual_seed(0)
    net = ResNet18(w=4).eval()
    x = torch.randn(8, 3, 32, 32)
    ref = cap.capture(net, x, ["layer2", "fc"])
    got = cap.capture(net.cuda(), x, ["layer2", "fc"])  # batches sent to the model's device
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)


# --------------------------------------------------------------------------------------------
# The project's models: the same hooks, the same bits as their forward_layers
# --------------------------------------------------------------------------------------------


def test_project_models_go_through_the_hooks(monkeypatch):
    torch.manual_seed(0)
    net = models.make_cnn(4)
    x = torch.randn(12, 1, 16, 16)
    _warm_bn(net, x * 2)
    lm = models.LSTMLM(20, embed_dim=6, hidden_size=9, n_layers=2)
    ids = torch.randint(0, 20, (5, 7))
    with torch.no_grad():
        net.eval()
        ref_cnn = {k: v.clone() for k, v in net.forward_layers(x).items()}
        net.train()
        ref_lm = lm.eval().forward_layers(ids)[0]
        lm.train()

    def no(*a, **k):
        raise AssertionError("capture must not call forward_layers")

    real = models.LSTMLM.forward_layers

    def hidden_only(self, ids, state=None):  # the LM runs it, but capture reads the hooks
        layers, new_state = real(self, ids, state)
        return {k: torch.full_like(v, np.nan) for k, v in layers.items()}, new_state

    monkeypatch.setattr(models.ConvNet, "forward_layers", no)
    monkeypatch.setattr(models.LSTMLM, "forward_layers", hidden_only)
    # the same batches as the reference (a batch's size can change the last bits)
    means = cap.capture(net, x)
    pos = cap.capture(net, x, ["conv2"], mode="positions")
    for name, a in ref_cnn.items():
        want = a.mean(dim=(2, 3)) if a.ndim == 4 else a
        assert np.array_equal(means[name], want.numpy()), name  # bit for bit
    assert np.array_equal(pos["conv2"], ref_cnn["conv2"].permute(0, 2, 3, 1).reshape(-1, 8))
    lm_acts = cap.capture(lm, ids)
    for name, a in ref_lm.items():
        assert np.array_equal(lm_acts[name], a.numpy()), name
    # the decoder, when asked for, runs the whole model (the same hidden states)
    with_logits = cap.capture(lm, ids, ["lstm2", "logits"])
    assert with_logits["logits"].shape == (5, 7, 20)
    assert np.array_equal(with_logits["lstm2"], lm_acts["lstm2"])
    # any named module of the project's models, too
    inner = cap.capture(net, x, "conv1.1", mode="raw")["conv1.1"]  # BatchNorm, before ReLU
    assert inner.shape == (12, 4, 8, 8) and (inner < 0).any()
    assert _hooks(net) == 0 and _hooks(lm) == 0 and net.training and lm.training
