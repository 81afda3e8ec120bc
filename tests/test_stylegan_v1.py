"""StyleGAN v1 (NVIDIA's TensorFlow pickles): safe loading, exactness against NVIDIA's own outputs,
the FFHQ configuration, conversion, rendering and mixing with a v1 generator."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aging.cli import main
from aging.stylegan import load_generator
from aging.stylegan.checkpoints import CheckpointError, checkpoint_format, load_checkpoint, save_generator
from aging.stylegan.networks_v1 import GeneratorV1, GeneratorV1Config, tf_variable_table
from aging.stylegan.tf_pickle import TFNetworkState, TFUnpickler
from aging.stylegan.weights import REGISTRY

FIX = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "stylegan1"
needs_fixtures = pytest.mark.skipif(not (FIX / "tiny.pkl").is_file(),
                                    reason="needs the shared fixtures ../shared/fixtures/stylegan1")
SENTINEL_CALLS: list = []


def sentinel(path):
    """What a malicious pickle would call: leaves a trace."""
    SENTINEL_CALLS.append(path)
    Path(path).write_text("ran")
    return path


class Smuggled:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (sentinel, (self.path,))


# --- writing TF-format pickles (as NVIDIA's code does: NEWOBJ + BUILD of a state dict) --------


@pytest.fixture()
def fake_network_module(monkeypatch):
    """A stand-in ``dnnlib.tflib.network.Network`` class, so the tests can write such pickles."""
    mod = types.ModuleType("dnnlib.tflib.network")

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mod.Network = Network
    for name in ("dnnlib", "dnnlib.tflib"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "dnnlib.tflib.network", mod)
    return Network


def read_states(path: Path):
    with open(path, "rb") as f:
        return TFUnpickler(f).load()


def to_fake(obj, Network):
    """TFNetworkState tree -> fake Network tree (to be pickled again)."""
    state = dict(obj.state)
    state["components"] = {k: to_fake(v, Network) for k, v in state["components"].items()}
    state["variables"] = [(k, np.array(v)) for k, v in state["variables"]]
    return Network(state)


def write_tf(path: Path, nets, *, protocol: int = 4) -> Path:
    path.write_bytes(pickle.dumps(tuple(nets), protocol=protocol))
    return path


def tiny_nets(Network):
    return [to_fake(n, Network) for n in read_states(FIX / "tiny.pkl")]


def decode_refs(G, ref, trunc: bool):
    """NVIDIA's reference protocol: one seed at a time, z as float32, constant noise."""
    ws_all, img_all = [], []
    psi = float(ref["truncation_psi"]) if trunc else 1.0
    with torch.no_grad():
        for z in ref["z"]:
            ws = G.mapping(torch.from_numpy(z[None].astype(np.float32)), truncation_psi=psi)
            ws_all.append(ws.numpy())
            img_all.append(G.synthesis(ws, noise_mode="const").numpy())
    return np.concatenate(ws_all), np.concatenate(img_all)


# --- exactness ---------------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("name,file", [("tiny", "tiny.pkl"), ("tiny", "tiny_protocol5.pkl"),
                                       ("small128", "small128.pkl")])
def test_matches_nvidia_reference_outputs(name, file):
    assert checkpoint_format(FIX / file) == "tf_pickle"
    G = load_generator(FIX / file)
    ref = np.load(FIX / f"{name}_ref.npz")
    assert isinstance(G, GeneratorV1) and not G.training
    assert (G.num_ws, G.w_dim, G.z_dim) == ref["dlatents"].shape[1:] + (ref["z"].shape[1],)
    assert G.img_resolution == ref["img"].shape[-1]
    np.testing.assert_array_equal(G.w_avg.numpy(), ref["dlatent_avg"])  # Gs, not G (zeros there)
    for trunc in (False, True):
        ws, img = decode_refs(G, ref, trunc)
        sfx = "_trunc" if trunc else ""
        assert np.abs(ws - ref["dlatents" + sfx]).max() <= 1e-4
        assert np.abs(img - ref["img" + sfx]).max() <= 1e-3
        assert np.abs(ref["img" + sfx]).max() > 1.5  # not in [-1, 1]: compared unclamped


@needs_fixtures
def test_truncation_cutoff_is_the_checkpoints_rule():
    G = load_generator(FIX / "small128.pkl")  # num_ws 12, cut-off 8
    z = torch.from_numpy(np.random.RandomState(5).randn(2, G.z_dim)).float()
    ws, t = G.mapping(z), G.mapping(z, truncation_psi=0.5)
    assert not torch.allclose(t[:, :8], ws[:, :8], atol=1e-3)
    torch.testing.assert_close(t[:, 8:], ws[:, 8:], rtol=0, atol=1e-5)
    t_all = G.mapping(z, truncation_psi=0.5, truncation_cutoff=G.num_ws)
    torch.testing.assert_close(t_all[:, 8:], G.w_avg + (ws[:, 8:] - G.w_avg) * 0.5)


@needs_fixtures
def test_noise_modes():
    G = load_generator(FIX / "tiny.pkl")
    ws = G.mapping(torch.zeros(1, G.z_dim) + 0.3)
    const, none = G.synthesis(ws, "const"), G.synthesis(ws, noise_mode="none")
    r1, r2 = G.synthesis(ws, "random"), G.synthesis(ws, "random")
    torch.testing.assert_close(G.synthesis(ws, "const"), const, rtol=0, atol=0)
    assert not torch.allclose(const, none) and not torch.allclose(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, "sometimes")


def test_ffhq_configuration_constructs_and_runs():
    G = GeneratorV1(GeneratorV1Config())  # FFHQ 1024 px defaults
    assert sum(p.numel() for p in G.parameters()) == 26_219_627
    assert (G.num_ws, G.w_dim, G.z_dim, G.img_resolution) == (18, 512, 512, 1024)
    assert len(tf_variable_table(G.config)) == len(G.state_dict()) + 2  # + the two lod scalars
    with torch.no_grad():
        img = G.synthesis(G.mapping(torch.randn(1, 512), truncation_psi=0.7), noise_mode="const")
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()


# --- pickle variants and strictness --------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("protocol", [4, 5])
def test_numpy2_names_and_protocols(tmp_path, fake_network_module, protocol):
    """Re-pickled by numpy 2 (``numpy._core.*``), protocols 4 and 5: same generator."""
    path = write_tf(tmp_path / "n2.pkl", tiny_nets(fake_network_module), protocol=protocol)
    data = path.read_bytes()
    assert b"numpy._core" in data and b"numpy.core." not in data
    a, b = load_generator(FIX / "tiny.pkl"), load_generator(path)
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)


@needs_fixtures
@pytest.mark.parametrize("change,message", [
    ("drop", "missing"), ("extra", "unknown"), ("shape", "has shape"), ("lod", "fully grown"),
    ("kwarg", "unknown StyleGAN v1 argument"), ("value", "not supported"), ("int", "float32"),
])
def test_strict_variable_table(tmp_path, fake_network_module, change, message):
    nets = tiny_nets(fake_network_module)
    syn = nets[2]._state["components"]["synthesis"]._state
    var = syn["variables"]
    if change == "drop":
        del var[5]
    elif change == "extra":
        var.append(("8x8/Conv9/weight", np.zeros(3, np.float32)))
    elif change == "shape":
        var[5] = (var[5][0], np.zeros((2, 2), np.float32))
    elif change == "lod":
        nets[2]._state["variables"][0] = ("lod", np.float32(1.0))
    elif change == "kwarg":
        syn["static_kwargs"]["use_magic"] = True
    elif change == "value":
        syn["static_kwargs"]["use_instance_norm"] = False
    else:
        var[5] = (var[5][0], var[5][1].astype(np.int32))
    with pytest.raises(CheckpointError, match=message) as info:
        load_generator(write_tf(tmp_path / "bad.pkl", nets))
    assert "bad.pkl" in str(info.value) and "\n" not in str(info.value)


@needs_fixtures
def test_other_entries_and_shapes_refused(tmp_path, fake_network_module):
    nets = tiny_nets(fake_network_module)
    with pytest.raises(CheckpointError, match="G_style"):  # D as the third entry
        load_generator(write_tf(tmp_path / "d.pkl", [nets[0], nets[2], nets[1]]))
    with pytest.raises(CheckpointError, match="tuple"):
        load_generator(write_tf(tmp_path / "two.pkl", nets[:2]))
    with pytest.raises(CheckpointError, match="Gs"):
        load_checkpoint(FIX / "tiny.pkl", entry="D")


# --- nothing runs -------------------------------------------------------------------------


@needs_fixtures
@pytest.mark.parametrize("where", ["state", "variable", "top"])
def test_smuggled_callable_is_refused_and_runs_nothing(tmp_path, fake_network_module, where):
    mark = tmp_path / "ran.txt"
    nets = tiny_nets(fake_network_module)
    if where == "state":
        nets[2]._state["static_kwargs"]["resolution"] = Smuggled(mark)
    elif where == "variable":
        nets[2]._state["components"]["mapping"]._state["variables"].append(("x", Smuggled(mark)))
    else:
        nets = [nets[0], nets[1], Smuggled(mark)]
    path = write_tf(tmp_path / "evil.pkl", nets)
    assert b"sentinel" in path.read_bytes() and checkpoint_format(path) == "tf_pickle"
    before = len(SENTINEL_CALLS)
    with pytest.raises(CheckpointError, match="refusing global .*sentinel.*nothing was executed"):
        load_generator(path)
    assert not mark.exists() and len(SENTINEL_CALLS) == before
    with pytest.raises(CheckpointError):  # the StyleGAN2 reader refuses it too
        load_checkpoint(path, entry="Gs")
    assert not mark.exists()


@needs_fixtures
def test_build_module_src_is_never_executed(tmp_path, fake_network_module):
    mark = tmp_path / "src_ran.txt"
    nets = tiny_nets(fake_network_module)
    for net in (nets[2], nets[2]._state["components"]["synthesis"]):
        net._state["build_module_src"] = f"open({str(mark)!r}, 'w').write('ran')\n"
    G = load_generator(write_tf(tmp_path / "src.pkl", nets))
    assert G.num_ws == 8 and not mark.exists()


def test_stand_in_keeps_state_only():
    s = TFNetworkState.__new__(TFNetworkState)
    s.__setstate__({"name": "Gs"})
    with pytest.raises(pickle.UnpicklingError):
        s.__setstate__({"name": "again"})
    with pytest.raises(pickle.UnpicklingError):
        TFNetworkState.__new__(TFNetworkState).__setstate__(["not", "a", "dict"])


# --- conversion, registry, render, mix ---------------------------------------------------------


@needs_fixtures
def test_convert_round_trip_is_bit_identical(tmp_path):
    r = CliRunner().invoke(main, ["weights", "convert", str(FIX / "small128.pkl"), str(tmp_path / "v1"),
                                  "--seeds", "0,1"])
    assert r.exit_code == 0, r.output
    assert "max abs diff ws 0, images 0" in r.output
    G, G2 = load_generator(FIX / "small128.pkl"), load_generator(tmp_path / "v1")
    assert isinstance(G2, GeneratorV1) and G2.config == G.config
    z = torch.from_numpy(np.random.RandomState(9).randn(2, G.z_dim)).float()
    with torch.no_grad():
        a = G.synthesis(G.mapping(z, truncation_psi=0.7), "const")
        b = G2.synthesis(G2.mapping(z, truncation_psi=0.7), "const")
    assert torch.equal(a, b)
    save_generator(G2, tmp_path / "again.pt")
    assert load_checkpoint(tmp_path / "again.pt").config == G.config


def test_registry_has_the_ffhq_v1_generator():
    entry = REGISTRY["stylegan1-ffhq-1024"]
    assert entry.filename == "karras2019stylegan-ffhq-1024x1024.pkl"
    assert entry.url.startswith("https://") and entry.sha256 is None


@needs_fixtures
def test_render_latents_and_mix_with_a_v1_pickle(tmp_path):
    G = load_generator(FIX / "tiny.pkl")
    rng = np.random.default_rng(0)
    subject = tmp_path / "subject00"
    subject.mkdir()
    for age in (7300, 7310, 7320):
        np.save(subject / f"{age}.npy", rng.standard_normal((G.num_ws, G.w_dim)).astype(np.float32) * 0.3)
    out = tmp_path / "recon.gif"
    r = CliRunner().invoke(main, ["render", "--latents", str(subject), "-g", str(FIX / "tiny.pkl"), "--format", "gif",
                                  "--size", "32", "--device", "cpu", "-o", str(out), "-q"])
    assert r.exit_code == 0, r.output
    from PIL import Image

    with Image.open(out) as im:
        assert im.n_frames == 3
    r = CliRunner().invoke(main, ["mix", str(subject / "7300.npy"), str(subject / "7320.npy"), "-g",
                                  str(FIX / "tiny.pkl"), "--layers", "4:8", "--size", "32", "--device", "cpu",
                                  "-o", str(tmp_path / "mix.png")])
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "mix.png") as im:
        assert im.size[1] >= 32 and im.size[0] >= 3 * 32


@needs_fixtures
def test_encode_with_a_v1_pickle(tmp_path):
    """aging encode takes a v1 pickle as it takes a StyleGAN2 one: (num_ws, w_dim) latents whose
    reconstruction is closer to its photo than the average face is."""
    from PIL import Image

    from tests.harness import cli

    faces = FIX.parent / "faces"
    for p in sorted(faces.glob("*.jpg"))[:3]:
        Image.open(p).convert("RGB").resize((32, 32)).save(tmp_path / f"{p.stem}.png")
    r = cli(["encode", tmp_path, "-g", FIX / "tiny.pkl", "--loss", "mse", "--steps", "40",
             "--steps-after-first", "10", "--batch", "1", "-o", tmp_path / "out", "-q"])
    assert r.exit_code == 0, r.stderr
    G = load_generator(FIX / "tiny.pkl")
    lat = sorted((tmp_path / "out" / "latents").glob("*.npy"))
    assert len(lat) == 3 and all(np.load(p).shape == (G.num_ws, G.w_dim) for p in lat)
    with torch.no_grad():
        mean_img = G.synthesis(G.mapping.w_avg.reshape(1, 1, -1).repeat(1, G.num_ws, 1), noise_mode="const")
        rec = G.synthesis(torch.from_numpy(np.load(lat[0]))[None], noise_mode="const")
    photo = torch.from_numpy(np.asarray(Image.open(tmp_path / f"{lat[0].stem}.png"), np.float32))
    photo = photo.permute(2, 0, 1)[None] / 127.5 - 1
    assert ((rec.clamp(-1, 1) - photo) ** 2).mean() < ((mean_img.clamp(-1, 1) - photo) ** 2).mean()
