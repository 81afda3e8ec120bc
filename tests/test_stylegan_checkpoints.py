"""Safe checkpoint loading: NVIDIA network pickles (real fixture and pickles written here in the
same layout), refusal of code-running pickles, and the project's own format."""

from __future__ import annotations

import collections
import json
import os
import pickle
import shutil
import sys
import types
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from aging.stylegan import load_generator
from aging.stylegan.checkpoints import (ALLOWED_GLOBALS, CheckpointError, PersistentObject, generator_config,
                                        load_checkpoint, read_network_pickle, save_generator)
from aging.stylegan.networks import GeneratorConfig
from tests.test_stylegan_networks import tiny_generator

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
TINY = FIXTURES / "stylegan2"
needs_fixture = pytest.mark.skipif(not TINY.is_dir(), reason="shared fixtures not available")


def images(G, seeds=(0, 1), psi=1.0, noise_mode="const"):
    z = torch.from_numpy(np.random.RandomState(list(seeds)).randn(len(seeds), G.z_dim)).float()
    with torch.no_grad():
        ws = G.mapping(z, truncation_psi=psi)
        return ws, G.synthesis(ws, noise_mode)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ---------------------------------------------------------------------------------------------
# Writing pickles in NVIDIA's layout (without their code): fake modules with the same global names


@pytest.fixture
def nvidia_names(monkeypatch, tmp_path):
    """Register stand-in modules ``torch_utils.persistence`` and ``dnnlib.util`` so that pickle
    writes the same global references as NVIDIA's code. Returns (reconstruct_fn, EasyDict, marker)."""
    marker = tmp_path / "module_src_was_executed"

    def _reconstruct_persistent_obj(meta):  # the real one execs meta["module_src"]
        exec(meta["module_src"])
        raise AssertionError("not reached")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = EasyDict.__name__ = "EasyDict"
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    sys.modules["dnnlib.util"].EasyDict = EasyDict
    return _reconstruct_persistent_obj, EasyDict, marker


class Persisted:
    """Pickles like NVIDIA's persistent classes: a call of _reconstruct_persistent_obj(meta)."""

    def __init__(self, fn, class_name, state, module_src):
        self.fn, self.class_name, self.state, self.module_src = fn, class_name, state, module_src

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self.class_name,
                    state=self.state)
        return self.fn, (meta,)


def persisted_tree(module, names, *, init_kwargs=None):
    fn, EasyDict, marker = names
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict((k, persisted_tree(c, names)) for k, c in module._modules.items()),
        "_forward_hooks": collections.OrderedDict(),
        "some_numpy_attribute": np.float32(0.5),
        "_unknown_future_torch_field": {},
    }
    if init_kwargs is not None:
        state["_init_args"] = ()
        state["_init_kwargs"] = EasyDict(init_kwargs)
    src = f"open({str(marker)!r}, 'w').write('pwned')\n"
    return Persisted(fn, type(module).__name__, state, src)


def nvidia_kwargs(G, layout, EasyDict):
    c = G.config
    synthesis = dict(channel_base=c.channel_base, channel_max=c.channel_max, num_fp16_res=c.num_fp16_res,
                     conv_clamp=c.conv_clamp)
    kw = dict(z_dim=G.z_dim, c_dim=0, w_dim=G.w_dim, img_resolution=G.img_resolution,
              img_channels=G.img_channels, mapping_kwargs=EasyDict(num_layers=c.mapping_layers))
    if layout == "ada":  # StyleGAN2-ADA: nested synthesis_kwargs
        kw["synthesis_kwargs"] = EasyDict(synthesis)
    else:  # StyleGAN3's networks_stylegan2: at the top level, plus run-time options
        kw.update(synthesis, fused_modconv_default="inference_only", architecture="skip")
    return kw


def write_network_pickle(path, G_ema, G, names, *, protocol=4, layout="ada", extra=None):
    data = {
        "training_set_kwargs": {"path": "x.zip", "resolution": G_ema.img_resolution},
        "G": persisted_tree(G, names, init_kwargs=nvidia_kwargs(G, layout, names[1])),
        "D": persisted_tree(torch.nn.Linear(2, 2), names),
        "G_ema": persisted_tree(G_ema, names, init_kwargs=nvidia_kwargs(G_ema, layout, names[1])),
        "augment_pipe": None,
        **(extra or {}),
    }
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol,layout", [(2, "ada"), (3, "ada"), (4, "ada"), (4, "sg3")])
def test_loads_network_pickle_written_in_nvidia_layout(tmp_path, nvidia_names, protocol, layout):
    G_ema = tiny_generator(16, conv_clamp=0.8, num_fp16_res=1, seed=1)
    G = tiny_generator(16, conv_clamp=0.8, num_fp16_res=1, seed=2)
    path = write_network_pickle(tmp_path / "net.pkl", G_ema, G, nvidia_names, protocol=protocol, layout=layout)
    loaded = load_checkpoint(path).eval()
    assert_same_weights(loaded, G_ema)
    assert loaded.config == G_ema.config
    for a, b in zip(images(loaded), images(G_ema)):
        assert torch.equal(a, b)
    other = load_checkpoint(path, entry="G")
    assert_same_weights(other, G)
    assert not nvidia_names[2].exists()  # module_src was never executed


def test_wrong_entry_and_unknown_tensors_are_named(tmp_path, nvidia_names):
    G = tiny_generator(8)
    path = write_network_pickle(tmp_path / "net.pkl", G, G, nvidia_names)
    with pytest.raises(CheckpointError, match="no 'G_avg' entry .*G_ema"):
        load_checkpoint(path, entry="G_avg")
    with pytest.raises(CheckpointError, match="entry 'D' is PersistentObject\\(Linear\\), not a Generator"):
        load_checkpoint(path, entry="D")

    G.synthesis.b8.register_buffer("extra_buffer", torch.zeros(2))
    del G.synthesis.b8.conv1._parameters["noise_strength"]
    path = write_network_pickle(tmp_path / "bad.pkl", G, G, nvidia_names)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    assert "unknown tensor(s): synthesis.b8.extra_buffer" in msg
    assert "missing tensor(s): synthesis.b8.conv1.noise_strength" in msg and "\n" not in msg


@pytest.mark.parametrize("name,value", [("mapping.w_avg", float("nan")), ("synthesis.b8.conv1.bias", float("inf"))])
def test_non_finite_weights_are_refused_naming_file_and_tensor(tmp_path, nvidia_names, name, value):
    """A diverged checkpoint would make NaN latents that look finished: refused on load, both formats."""
    G = tiny_generator(8)
    with torch.no_grad():
        dict(G.named_parameters(), **dict(G.named_buffers()))[name].view(-1)[0] = value
    pkl = write_network_pickle(tmp_path / "net.pkl", G, G, nvidia_names)
    own, _ = save_generator(G, tmp_path / "own")
    for path, where in ((pkl, "net.pkl[G_ema]"), (tmp_path / "own", "generator.pt")):
        with pytest.raises(CheckpointError) as exc:
            load_generator(path)
        msg = str(exc.value)
        assert where in msg and f"'{name}' holds 1 NaN or inf value" in msg and "\n" not in msg


def test_shape_mismatch_is_named(tmp_path, nvidia_names):
    G = tiny_generator(8)
    G.synthesis.b8.conv1.bias = torch.nn.Parameter(torch.zeros(3))
    path = write_network_pickle(tmp_path / "net.pkl", G, G, nvidia_names)
    with pytest.raises(CheckpointError, match=r"'synthesis.b8.conv1.bias' has shape \[3\], expected \[8\]"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Pickles that try to run code


class SystemCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class ExecCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class EvilStorage:
    """A tensor storage whose bytes are themselves a code-running pickle."""

    def __init__(self, marker):
        self.payload = pickle.dumps(SystemCall(marker), protocol=2)

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.payload,)


@pytest.mark.parametrize("evil,refused", [(SystemCall, "system"), (ExecCall, "exec"), (EvilStorage, None)])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path, evil, refused):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    payload = {"training_set_kwargs": {"x": evil(marker)}, "G_ema": None}
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    if refused:
        assert "refusing global" in msg and refused in msg
    assert not marker.exists()
    # the same through load_generator and read_network_pickle
    with pytest.raises(CheckpointError):
        load_generator(path)
    with pytest.raises(CheckpointError):
        read_network_pickle(path)
    assert not marker.exists()


class BadView:
    """A tensor whose view reaches past the end of its storage (torch would grow the storage)."""

    def __init__(self, offset, size, stride):
        self.args = (torch.zeros(10).untyped_storage(), offset, size, stride)

    def __reduce__(self):
        storage = torch.storage.TypedStorage(wrap_storage=self.args[0], dtype=torch.float32, _internal=True)
        return torch._utils._rebuild_tensor_v2, (storage, *self.args[1:], False, collections.OrderedDict())


@pytest.mark.parametrize("offset,size,stride,ok", [
    ((0, (10,), (1,), True)),
    ((0, (2, 5), (5, 1), True)),
    ((9, (2,), (1,), False)),  # one past the end
    ((0, (2 ** 40,), (1,), False)),  # would allocate 4 TB
    ((-1, (2,), (1,), False)),
    ((0, (5,), (-1,), False)),
])
def test_tensor_views_are_bounds_checked(tmp_path, offset, size, stride, ok):
    path = tmp_path / "view.pkl"
    path.write_bytes(pickle.dumps({"t": BadView(offset, size, stride)}))
    if ok:
        assert read_network_pickle(path)["t"].shape == size
    else:
        with pytest.raises(CheckpointError, match="not a readable network pickle"):
            read_network_pickle(path)


def test_allowed_globals_are_only_the_known_ones():
    modules = {m for m, _ in ALLOWED_GLOBALS}
    assert modules <= {"torch_utils.persistence", "dnnlib.util", "collections", "torch._utils", "torch.storage",
                       "numpy", "numpy._core.multiarray", "numpy.core.multiarray", "builtins", "__builtin__",
                       "_codecs"}
    assert ("builtins", "eval") not in ALLOWED_GLOBALS and ("torch", "load") not in ALLOWED_GLOBALS


# ---------------------------------------------------------------------------------------------
# The real NVIDIA fixture


@needs_fixture
def test_fixture_reproduces_reference_outputs():
    ref = np.load(TINY / "tiny_ref.npz")
    G = load_generator(TINY / "tiny.pkl")
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert (G.z_dim, G.w_dim, G.num_ws, G.img_resolution) == (64, 64, 10, 64)
    psi = float(ref["truncation_psi"])
    for seed, z in zip(ref["seeds"], ref["z"]):
        assert np.array_equal(np.random.RandomState(int(seed)).randn(1, 64)[0].astype(np.float32), z)
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        ws = G.mapping(z)
        img = G.synthesis(torch.from_numpy(ref["ws"]), noise_mode="const")
        img_own_ws = G.synthesis(ws, noise_mode="const")
        ws_trunc = G.mapping(z, truncation_psi=psi)
        img_trunc = G.synthesis(ws_trunc, noise_mode="const")
    diffs = {
        "ws": np.abs(ws.numpy() - ref["ws"]).max(),
        "img": np.abs(img.numpy() - ref["img"]).max(),
        "img (own ws)": np.abs(img_own_ws.numpy() - ref["img"]).max(),
        "ws_trunc": np.abs(ws_trunc.numpy() - ref["ws_trunc"]).max(),
        "img_trunc": np.abs(img_trunc.numpy() - ref["img_trunc"]).max(),
        "w_avg": np.abs(G.w_avg.numpy() - ref["w_avg"]).max(),
    }
    print("fixture max abs diffs:", {k: f"{v:.2e}" for k, v in diffs.items()})
    assert max(diffs.values()) <= 1e-4, diffs
    assert ref["img"].std() > 0.1  # a real signal was compared


@needs_fixture
def test_fixture_G_entry_is_not_G_ema():
    ref = np.load(TINY / "tiny_ref.npz")
    G = load_generator(TINY / "tiny.pkl", entry="G")
    with torch.no_grad():
        img = G.synthesis(G.mapping(torch.from_numpy(ref["z"])))
    assert np.abs(img.numpy() - ref["img"]).max() > 1e-2


@needs_fixture
def test_fixture_structure_and_state_dict_order():
    info = json.loads((TINY / "tiny_keys.json").read_text())
    assert {tuple(g.rsplit(".", 1)) for g in info["globals_requested"]} <= set(ALLOWED_GLOBALS)
    data = read_network_pickle(TINY / "tiny.pkl")
    assert isinstance(data["G_ema"], PersistentObject) and data["G_ema"].class_name == "Generator"
    assert data["D"].class_name == "Discriminator" and data["augment_pipe"] is None
    G = load_checkpoint(TINY / "tiny.pkl")
    assert [(k, list(v.shape)) for k, v in G.state_dict().items()] == [(k[0], k[2]) for k in info["keys"]]


@needs_fixture
def test_truncated_pickle_is_a_clear_error(tmp_path):
    data = (TINY / "tiny.pkl").read_bytes()
    bad = tmp_path / "truncated.pkl"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable network pickle") as exc:
        load_checkpoint(bad)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------------------
# Constructor arguments


def test_generator_config_table():
    ada = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3,
               mapping_kwargs={"num_layers": 8}, synthesis_kwargs={"channel_base": 32768, "channel_max": 512,
                                                                    "num_fp16_res": 4, "conv_clamp": 256})
    cfg = generator_config(ada)
    assert cfg == dict(z_dim=512, w_dim=512, img_resolution=1024, img_channels=3, mapping_layers=8,
                       channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256.0)
    flat = {k: v for k, v in ada.items() if k != "synthesis_kwargs"}
    flat.update(ada["synthesis_kwargs"], fused_modconv_default="inference_only")
    assert generator_config(flat) == cfg
    with pytest.raises(CheckpointError, match="conditional generator \\(c_dim=10\\)"):
        generator_config({**ada, "c_dim": 10})
    with pytest.raises(CheckpointError, match="unknown synthesis argument 'magic'"):
        generator_config({**ada, "synthesis_kwargs": {**ada["synthesis_kwargs"], "magic": 1}})
    with pytest.raises(CheckpointError, match="architecture='resnet' is not supported"):
        generator_config({**ada, "synthesis_kwargs": {"architecture": "resnet"}})
    with pytest.raises(CheckpointError, match="'z_dim' missing"):
        generator_config({k: v for k, v in ada.items() if k != "z_dim"})


# ---------------------------------------------------------------------------------------------
# The project's own format


@pytest.mark.parametrize("target", ["dir", "file.pt"])
def test_own_format_round_trip_is_bit_identical(tmp_path, target):
    G = tiny_generator(16, conv_clamp=2.0, num_fp16_res=2)
    wpath, cpath = save_generator(G, tmp_path / target, source="test")
    assert wpath.suffix == ".pt" and cpath.suffix == ".json"
    assert not [p for p in wpath.parent.iterdir() if ".tmp" in p.name]
    state = torch.load(wpath, weights_only=True)
    assert list(state) == list(G.state_dict())
    meta = json.loads(cpath.read_text())
    assert meta["format"] == "aging.stylegan2.generator" and meta["config"] == json.loads(json.dumps(asdict(G.config)))
    assert GeneratorConfig(**meta["config"]) == G.config
    for path in (tmp_path / target, cpath, wpath):
        G2 = load_checkpoint(path).eval()
        assert_same_weights(G2, G)
        for a, b in zip(images(G2), images(G)):
            assert torch.equal(a, b)
        assert G2.config == G.config


def test_own_format_written_before_the_config_dataclass_still_loads(tmp_path):
    """A generator.json as the project wrote it when the config was a hand-built dict (same keys)."""
    G = tiny_generator(8, conv_clamp=2.0, num_fp16_res=1)
    wpath, cpath = save_generator(G, tmp_path / "g")
    legacy = {
        "config": {"channel_base": 64, "channel_max": 8, "conv_clamp": 2.0, "img_channels": 3, "img_resolution": 8,
                   "mapping_features": None, "mapping_layers": 2, "mapping_lr_multiplier": 0.01, "num_fp16_res": 1,
                   "resample_filter": [1.0, 3.0, 3.0, 1.0], "use_noise": True, "w_avg_beta": 0.995, "w_dim": 8,
                   "z_dim": 8},
        "format": "aging.stylegan2.generator", "num_ws": 4, "sha256": json.loads(cpath.read_text())["sha256"],
        "source": None, "version": 1, "weights": "generator.pt"}
    cpath.write_text(json.dumps(legacy, indent=2, sort_keys=True))
    G2 = load_checkpoint(tmp_path / "g").eval()
    assert G2.config == G.config
    assert_same_weights(G2, G)
    for a, b in zip(images(G2), images(G)):
        assert torch.equal(a, b)


def test_own_format_detects_tampering_and_mismatch(tmp_path):
    G = tiny_generator(8)
    wpath, cpath = save_generator(G, tmp_path / "g")
    # replaced weights file
    good = wpath.read_bytes()
    sd = G.state_dict()
    sd["synthesis.b4.const"] = sd["synthesis.b4.const"] + 1
    torch.save(sd, wpath)
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_checkpoint(tmp_path / "g")
    wpath.write_bytes(good)
    # config that does not fit the tensors
    meta = json.loads(cpath.read_text())
    meta["config"]["channel_max"] = 4
    cpath.write_text(json.dumps(meta))
    want = r"tensor 'synthesis.b4.const' has shape \[8, 4, 4\], expected \[4, 4, 4\]"
    with pytest.raises(CheckpointError, match=want):
        load_checkpoint(tmp_path / "g")
    meta["config"]["channel_max"] = 8
    meta["config"]["bogus"] = 1
    cpath.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="bad generator config"):
        load_checkpoint(tmp_path / "g")


def test_unknown_formats_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"GIF89a not a checkpoint")
    text = tmp_path / "notes.txt"
    text.write_text("hello\nworld\n")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    for path in (junk, text, empty_dir):
        with pytest.raises(CheckpointError, match="unknown checkpoint format") as exc:
            load_checkpoint(path)
        assert str(path) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pkl")
    lone = tmp_path / "lone.pt"
    torch.save({"a": torch.zeros(1)}, lone)
    with pytest.raises(CheckpointError, match="config file lone.json not found"):
        load_checkpoint(lone)
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"format": "something-else"}')
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_checkpoint(foreign)


@needs_fixture
def test_fixture_converted_to_own_format_matches_reference(tmp_path):
    ref = np.load(TINY / "tiny_ref.npz")
    shutil.copy(TINY / "tiny.pkl", tmp_path / "tiny.pkl")
    save_generator(load_checkpoint(tmp_path / "tiny.pkl"), tmp_path / "tiny")
    G = load_generator(tmp_path / "tiny")
    with torch.no_grad():
        img = G.synthesis(G.mapping(torch.from_numpy(ref["z"]), truncation_psi=float(ref["truncation_psi"])))
    assert np.abs(img.numpy() - ref["img_trunc"]).max() <= 1e-4
