"""Every config refuses bad values at construction; parameters have one source (the Config).

* Each chapter ``Config`` and the engine's training configs refuse, with a ``TypeError`` or
  ``ValueError`` naming the field and the value: a wrong type (int fields take no bool or
  float, float fields no bool, inf or nan, bool fields only True/False), an absurd size, a
  missing seed, an empty sweep.
* ``Config.from_params`` converts exactly lists to tuples and ints to floats for float fields.
* The notebook's parameters cell lists every parameter of its ``Config`` with its default; the
  quick profile is the defaults; the full profile holds only values that differ; the two RNN
  chapters train the same LSTM in every profile.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import math
from pathlib import Path

import pytest

from cca_lib import book, training
from cca_lib.experiments import rnn_dynamics, rnn_timesteps, signal_noise

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ("signal_noise", "layer_id", "cnn_dynamics", "learning_rate", "memorization",
            "rnn_dynamics", "rnn_timesteps", "width", "own_model")
CONFIGS = {name: importlib.import_module(f"cca_lib.experiments.{name}").Config
           for name in CHAPTERS}
ENGINE = {"CNNTrainConfig": training.CNNTrainConfig, "LMTrainConfig": training.LMTrainConfig}
ALL = {**CONFIGS, **ENGINE}
#: Fields where None has a documented, non-random meaning.
NONE_OK = {"data_seed", "label_seed", "steps", "depth", "train_size", "eval_size",
           "eval_every", "train_tokens", "eval_tokens", "grad_clip", "target_train_acc",
           "stop_at_train_acc", "target_valid_ppl", "threads", "n_windows", "repeat_token"}


def _bad_values(f: dataclasses.Field) -> list:
    """Values of the wrong type for field ``f`` (from its annotation)."""
    kind = str(f.type).replace(" ", "")
    base = kind.removesuffix("|None")
    none = [] if kind.endswith("|None") else [None]
    if base == "int":
        return [True, 2.5, 2.0, "3", 10**12, float("inf"), *none]
    if base == "float":
        return [True, float("inf"), float("nan"), -float("inf"), "0.1", *none]
    if base == "bool":
        return ["yes", 1, 0, None]
    if base == "str":
        return [3, b"x", *none]
    if base.startswith("tuple["):
        return [(), "ab", 5, None]
    return []


CASES = [(cname, f.name, bad) for cname, cls in ALL.items() for f in dataclasses.fields(cls)
         for bad in _bad_values(f)
         if not (f.name in NONE_OK and bad is None)
         and not (cname in ENGINE and f.name == "checkpoints" and bad == ())]


def _shown(value) -> str:
    return "nan" if isinstance(value, float) and math.isnan(value) else repr(value)


@pytest.mark.parametrize(("cname", "field", "bad"), CASES,
                         ids=[f"{c}-{f}-{b!r}" for c, f, b in CASES])
def test_bad_value_is_refused_at_construction_naming_field_and_value(cname, field, bad):
    with pytest.raises((TypeError, ValueError)) as info:
        ALL[cname](**{field: bad})
    message = str(info.value)
    assert field in message and _shown(bad) in message, message


def test_every_field_type_is_covered():
    """Every field has bad values above (a field with a new type must get some)."""
    for cname, cls in ALL.items():
        for f in dataclasses.fields(cls):
            if cname == "rnn_timesteps" and f.name == "training":
                continue
            assert _bad_values(f), f"{cname}.{f.name}: type {f.type} has no bad values"


# -- the cases the reliability issue lists, one by one --------------------------------------

@pytest.mark.parametrize("cname", [c for c, cls in ALL.items()
                                   if "epochs" in {f.name for f in dataclasses.fields(cls)}])
def test_infinite_epochs_refused(cname):
    with pytest.raises(ValueError, match=r"epochs must be finite, got inf"):
        ALL[cname](epochs=float("inf"))


@pytest.mark.parametrize("cname", list(ALL))
@pytest.mark.parametrize("seed", [None, 2.5, -1, True])
def test_seed_must_be_an_int(cname, seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        ALL[cname](seed=seed)


def test_signal_noise_without_a_seed_does_not_run():
    with pytest.raises(TypeError, match="seed must be an int seed.*got None"):
        signal_noise.run(signal_noise.Config(seed=None), progress=False)


def test_none_keeps_its_documented_meaning_for_data_and_label_seeds():
    cfg = training.CNNTrainConfig(data_seed=None, label_seed=None)
    assert cfg.data_seed is None and cfg.label_seed is None
    assert training.LMTrainConfig(data_seed=None).data_seed is None


@pytest.mark.parametrize(("cname", "kw", "match"), [
    ("cnn_dynamics", {"n_linear": 10**9}, "n_linear"),
    ("cnn_dynamics", {"log_checkpoints": 10**9}, "log_checkpoints"),
    ("cnn_dynamics", {"width": 10**7}, "width"),
    ("signal_noise", {"n_points": 10**9}, "n_points"),
    ("signal_noise", {"n_neurons": 60_000, "n_points": 200_000,
                      "signal_dims": (20,), "spectrum_dims": (20,)}, "allocate"),
    ("rnn_timesteps", {"toy_samples": 10**6, "window": 1000}, "allocate"),
    ("rnn_dynamics", {"probe_seqs": 10**6, "probe_len": 10**3}, "allocate"),
    ("rnn_dynamics", {"hidden_size": 10**6}, "hidden_size"),
    ("width", {"n_subsets": 10**9}, "n_subsets"),
    ("learning_rate", {"n_seeds": 10**9}, "n_seeds"),
    ("memorization", {"n_nets": 10**9}, "n_nets"),
    ("CNNTrainConfig", {"log_checkpoints": 10**9}, "log_checkpoints"),
    ("LMTrainConfig", {"hidden_size": 10**9}, "hidden_size"),
])
def test_absurd_sizes_refused(cname, kw, match):
    with pytest.raises(ValueError, match=match):
        ALL[cname](**kw)


@pytest.mark.parametrize(("cname", "kw", "match"), [
    ("cnn_dynamics", {"dataset": "imagenet"}, "dataset"),
    ("cnn_dynamics", {"dataset": "ptb"}, "dataset must name a images dataset"),
    ("cnn_dynamics", {"lr": 0.0}, "lr must be positive"),
    ("cnn_dynamics", {"train_size": 100}, "train_size"),
    ("cnn_dynamics", {"eval_size": 0}, "eval_size"),
    ("cnn_dynamics", {"final_lr_frac": 1.5}, "final_lr_frac"),
    ("learning_rate", {"batch_size": 0}, "batch_size"),
    ("learning_rate", {"dataset": "cifar100"}, "dataset"),
    ("learning_rate", {"train_size": 64}, "train_size"),
    ("learning_rate", {"learning_rates": (0.1, -0.1)}, r"learning_rates\[1\]"),
    ("memorization", {"lr": -1.0}, "lr"),
    ("memorization", {"batch_size": 2000}, "train_size"),
    ("memorization", {"dataset": "tinyshakespeare"}, "dataset"),
    ("width", {"lr": float("nan")}, "lr must be finite"),
    ("width", {"batch_size": 0}, "batch_size"),
    ("width", {"train_size": 0}, "train_size"),
    ("width", {"widths": (8, 10, 0)}, r"widths\[2\]"),
    ("rnn_dynamics", {"corpus": "fashion-mnist"}, "corpus"),
    ("rnn_dynamics", {"final_lr_frac": -0.1}, "final_lr_frac"),
    ("rnn_dynamics", {"batch_size": 0}, "batch_size"),
    ("rnn_dynamics", {"lr": 0}, "lr"),
    ("signal_noise", {"noise_sweep": ()}, "noise_sweep"),
    ("signal_noise", {"spectrum_dims": ()}, "spectrum_dims"),
    ("signal_noise", {"signal_dims": (20, 20.5)}, r"signal_dims\[1\]"),
    ("rnn_timesteps", {"toy_blend": ()}, "toy_blend"),
    ("rnn_timesteps", {"carry_state": "yes"}, "carry_state must be True or False"),
    ("rnn_timesteps", {"carry_state": 1}, "carry_state"),
])
def test_chapter_config_checks_its_engine_values_and_sweeps(cname, kw, match):
    with pytest.raises((TypeError, ValueError), match=match):
        ALL[cname](**kw)


def test_float_fields_take_ints_and_int_fields_take_no_floats():
    assert CONFIGS["cnn_dynamics"](epochs=12, lr=1).epochs == 12
    assert training.CNNTrainConfig(epochs=3).epochs == 3
    with pytest.raises(TypeError, match=r"width must be an int, got 16.0"):
        CONFIGS["cnn_dynamics"](width=16.0)
    with pytest.raises(TypeError, match=r"bf16 must be True or False, got 'yes'"):
        training.CNNTrainConfig(bf16="yes")


# -- from_params ----------------------------------------------------------------------------

def test_from_params_converts_lists_and_ints_for_floats_only():
    cfg = CONFIGS["learning_rate"].from_params({"learning_rates": [1, 0.5], "epochs": 4,
                                                "n_seeds": 2, "max_clusters": 3})
    assert cfg.learning_rates == (1.0, 0.5) and type(cfg.epochs) is float and cfg.epochs == 4.0
    assert cfg == CONFIGS["learning_rate"](learning_rates=(1.0, 0.5), epochs=4.0, n_seeds=2,
                                           max_clusters=3)
    assert CONFIGS["width"].from_params({"layers": ["conv4"]}).layers == ("conv4",)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['n_seed'\]"):
        CONFIGS["width"].from_params({"n_seed": 3})
    with pytest.raises(TypeError, match="n_seeds must be an int"):
        CONFIGS["width"].from_params({"n_seeds": 3.0})  # no float -> int
    with pytest.raises(TypeError, match="epochs must be a number"):
        CONFIGS["width"].from_params({"epochs": "3"})  # no str -> number
    with pytest.raises(TypeError, match="carry_state must be True or False"):
        rnn_timesteps.Config.from_params({"carry_state": "true"})
    with pytest.raises(TypeError, match="mapping"):
        CONFIGS["width"].from_params([("n_seeds", 3)])


def test_from_namespace_needs_every_parameter():
    ns = {name: value for name, value in signal_noise.Config.defaults().items()}
    assert signal_noise.Config.from_namespace({**ns, "unrelated": 1}) == signal_noise.Config()
    del ns["seed"]
    with pytest.raises(NameError, match="seed"):
        signal_noise.Config.from_namespace(ns)


def test_every_parameter_has_a_meaning():
    for name, cls in CONFIGS.items():
        for param, f in cls.parameters().items():
            assert f.metadata["help"].strip(), f"{name}.{param} has no meaning"
            assert isinstance(f.metadata["paper"], str)


# -- one source: notebook cells, profiles -----------------------------------------------------

def _parameters_cell(name: str) -> dict:
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = {}
    for node in ast.parse(cell.source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, \
            f"{name}: the parameters cell holds only `name = literal` lines"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def _same(a, b) -> bool:
    a = tuple(a) if isinstance(a, list) else a
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("name", CHAPTERS)
def test_parameters_cell_is_exactly_the_config_defaults(name):
    cell = _parameters_cell(name)
    defaults = CONFIGS[name].defaults()
    assert list(cell) == list(defaults), f"{name}: the cell must list the parameters in order"
    drift = {k: (cell[k], defaults[k]) for k in defaults if not _same(cell[k], defaults[k])}
    assert not drift, f"{name}: parameters cell (left) differs from Config defaults: {drift}"
    assert CONFIGS[name].from_params(cell) == CONFIGS[name]()


def test_every_chapter_with_a_module_is_checked():
    for name in book.toc_chapters(ROOT / "_toc.yml"):
        if book.chapter_module(name) is not None:
            assert name in CHAPTERS, name


@pytest.mark.parametrize("name", CHAPTERS)
def test_quick_is_the_defaults_and_full_only_differs(name):
    assert book.load_params(ROOT, "quick", name) == {}
    assert not (ROOT / "params" / "quick").exists()
    own = book.load_params(ROOT, "full", name)
    cls = CONFIGS[name]
    converted = cls._convert(own)  # unknown names refused here
    defaults = cls.defaults()
    import yaml

    in_file = yaml.safe_load((ROOT / "params" / "full" / f"{name}.yaml").read_text()) or {}
    same = [k for k in in_file if _same(converted[k], defaults[k])]
    assert not same, f"params/full/{name}.yaml repeats defaults: {same}"
    cls.from_params(own)  # valid


@pytest.mark.parametrize("profile", book.PROFILES)
def test_rnn_chapters_share_one_lstm_run_in_every_profile(profile):
    dyn = rnn_dynamics.Config.from_params(book.load_params(ROOT, profile, "rnn_dynamics"))
    ts = rnn_timesteps.Config.from_params(book.load_params(ROOT, profile, "rnn_timesteps"))
    for f in rnn_dynamics.RUN_FIELDS:
        assert getattr(ts.training, f) == getattr(dyn, f), (profile, f)
    assert rnn_dynamics.lm_configs(ts.training, 1000) == rnn_dynamics.lm_configs(dyn, 1000)
    assert set(rnn_dynamics.RUN_FIELDS) <= set(rnn_timesteps.Config.parameters())


def test_run_fields_are_exactly_what_defines_the_run():
    """Changing a field outside RUN_FIELDS leaves the engine config alone; every field in it
    changes it (so the timesteps chapter takes all of them, and only those)."""
    base = rnn_dynamics.lm_configs(rnn_dynamics.Config(), 500)
    changed = {"corpus": "ptb", "n_layers": 4, "hidden_size": 32, "embed_dim": 16,
               "dropout": 0.1, "lr": 1e-3, "schedule": "constant", "final_lr_frac": 0.0,
               "batch_size": 16, "seq_len": 16, "epochs": 2.0, "train_tokens": 10_000,
               "log_checkpoints": 5, "tail_checkpoints": 2, "tail_frac": 0.5,
               "eval_points": 10, "n_seeds": 2, "seed": 1, "threads": 2, "probe_seqs": 300,
               "probe_len": 40, "threshold": 0.2}
    assert set(changed) == {f.name for f in dataclasses.fields(rnn_dynamics.Config)}
    for name, value in changed.items():
        same = rnn_dynamics.lm_configs(rnn_dynamics.Config(**{name: value}), 500) == base
        assert same == (name not in rnn_dynamics.RUN_FIELDS), name


def test_timesteps_profile_may_not_set_the_shared_run(tmp_path):
    (tmp_path / "params" / "full").mkdir(parents=True)
    (tmp_path / "params" / "full" / "rnn_dynamics.yaml").write_text("hidden_size: 128\n")
    (tmp_path / "params" / "full" / "rnn_timesteps.yaml").write_text("toy_dim: 128\n")
    assert book.load_params(tmp_path, "full", "rnn_timesteps") == {"toy_dim": 128,
                                                                       "hidden_size": 128}
    (tmp_path / "params" / "full" / "rnn_timesteps.yaml").write_text("hidden_size: 96\n")
    with pytest.raises(ValueError, match="rnn_dynamics.yaml"):
        book.load_params(tmp_path, "full", "rnn_timesteps")


def test_parameter_table_comes_from_the_metadata():
    table = book.parameter_table("cnn_dynamics", {"width": 16}, root=ROOT)
    assert list(table.index) == list(CONFIGS["cnn_dynamics"].parameters())
    f = CONFIGS["cnn_dynamics"].parameters()["width"]
    assert table.loc["width", "meaning"] == f.metadata["help"]
    assert table.loc["width", "paper"] == f.metadata["paper"]
    assert table.loc["width", "quick"] == "16" and table.loc["width", "full"] == "32"
    assert table.loc["width", "this run"] == "16" and table.loc["seed", "this run"] == ""
    ts = book.parameter_table("rnn_timesteps", root=ROOT)
    assert ts.loc["hidden_size", "full"] == "128"  # from the dynamics chapter's profile
    method = book.parameter_table("method", root=ROOT)  # no Config: the notebook's cell
    assert method.loc["n_features", "full"] == "200" and method.loc["seed", "full"] == "0"
