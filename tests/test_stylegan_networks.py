"""The StyleGAN2 generator on tiny configurations (CPU)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from aging.stylegan.networks import (Generator, GeneratorConfig, SynthesisLayer, conv2d_up, make_resample_filter,
                                     modulated_conv2d, upsample2d)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
TINY = FIXTURES / "stylegan2"


def tiny_generator(res=16, z_dim=8, w_dim=8, *, seed=0, noise=0.5, **kw) -> Generator:
    """A random generator with non-trivial noise strengths, biases and w_avg."""
    torch.manual_seed(seed)
    kw = {"mapping_layers": 2, "channel_base": 8 * res, "channel_max": 8, **kw}
    G = Generator(z_dim=z_dim, w_dim=w_dim, img_resolution=res, **kw)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(noise)
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
        G.mapping.w_avg.copy_(torch.randn(w_dim))
    return G.eval()


@pytest.mark.parametrize("res,z_dim,w_dim,layers", [(4, 8, 16, 1), (8, 16, 8, 2), (32, 12, 8, 3), (64, 8, 8, 1)])
def test_shapes_for_resolutions_and_dims(res, z_dim, w_dim, layers):
    G = tiny_generator(res, z_dim, w_dim, mapping_layers=layers)
    num_ws = 2 * (res.bit_length() - 1) - 2
    assert (G.z_dim, G.w_dim, G.img_resolution, G.img_channels, G.num_ws) == (z_dim, w_dim, res, 3, num_ws)
    assert G.w_avg.shape == (w_dim,)
    z = torch.randn(3, z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        img = G.synthesis(ws)
        img2 = G(z)
    assert ws.shape == (3, num_ws, w_dim) and ws.dtype == torch.float32
    assert img.shape == (3, 3, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all() and img.std() > 0
    assert torch.equal(img, img2)  # forward = synthesis(mapping(z))


def test_bad_resolution_and_shapes_raise():
    for res in (2, 48, 0):
        with pytest.raises(ValueError, match="power of two"):
            Generator(z_dim=4, w_dim=4, img_resolution=res, channel_base=64, channel_max=4)
    G = tiny_generator(8)
    with pytest.raises(ValueError, match=r"ws: expected shape \[\*, 4, 8\], got \[2, 5, 8\]"):
        G.synthesis(torch.zeros(2, 5, 8))
    with pytest.raises(ValueError, match="z: expected shape"):
        G.mapping(torch.zeros(2, 9))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(torch.zeros(1, 4, 8), noise_mode="fixed")


def test_config_dataclass_is_the_one_description_of_the_architecture():
    kw = dict(z_dim=8, w_dim=8, img_resolution=16, mapping_layers=2, channel_base=128, channel_max=8,
              conv_clamp=256, resample_filter=[1, 3, 3, 1])
    config = GeneratorConfig(**kw)
    assert config.conv_clamp == 256.0 and isinstance(config.conv_clamp, float)
    assert config.resample_filter == (1.0, 3.0, 3.0, 1.0)
    assert GeneratorConfig(**json.loads(json.dumps(asdict(config)))) == config  # what save_generator stores
    assert config.block_resolutions == [4, 8, 16] and config.channels(16) == 8
    torch.manual_seed(0)
    G = Generator(config)
    torch.manual_seed(0)
    G2 = Generator(**kw)  # the fields as keywords: the same generator
    assert G.config == G2.config == config and G.num_ws == G2.num_ws == 6
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))
    with pytest.raises(TypeError, match="not both"):
        Generator(config, z_dim=4)
    with pytest.raises(TypeError):
        GeneratorConfig(bogus=1)
    with pytest.raises(ValueError, match="mapping_layers must be >= 1"):
        GeneratorConfig(mapping_layers=0)
    with pytest.raises(ValueError, match="gives no channels"):
        GeneratorConfig(img_resolution=64, channel_base=32, channel_max=8)


def test_truncation_identity_zero_and_cutoff():
    G = tiny_generator(8)
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        ws = G.mapping(z)
        assert torch.equal(G.mapping(z, truncation_psi=1.0), ws)
        assert torch.equal(ws, ws[:, :1].expand_as(ws))  # the same w on every layer
        w0 = G.mapping(z, truncation_psi=0.0)
        torch.testing.assert_close(w0, G.w_avg.expand_as(w0), rtol=0, atol=1e-6)
        half = G.mapping(z, truncation_psi=0.5)
        torch.testing.assert_close(half, (ws + G.w_avg) / 2, rtol=0, atol=1e-5)
        cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
        torch.testing.assert_close(cut[:, :2], G.w_avg.expand(4, 2, -1), rtol=0, atol=1e-6)
        assert torch.equal(cut[:, 2:], ws[:, 2:])
    assert not torch.allclose(ws, w0)


def test_mapping_normalises_z_and_updates_w_avg_only_when_asked():
    G = tiny_generator(8)
    z = torch.randn(5, G.z_dim)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(3.0 * z), G.mapping(z), rtol=1e-5, atol=1e-6)
        before = G.w_avg.clone()
        G.mapping(z)
        assert torch.equal(G.w_avg, before)
        ws = G.mapping(z, update_emas=True)
    beta = G.mapping.w_avg_beta
    torch.testing.assert_close(G.w_avg, ws[:, 0].mean(0) * (1 - beta) + before * beta, rtol=1e-5, atol=1e-6)


def test_noise_modes():
    G = tiny_generator(16, noise=1.0)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim))
        const1, const2 = G.synthesis(ws, "const"), G.synthesis(ws, "const")
        rand1, rand2 = G.synthesis(ws, "random"), G.synthesis(ws, "random")
        none = G.synthesis(ws, "none")
        assert torch.equal(const1, const2)
        assert not torch.allclose(rand1, rand2)
        assert not torch.allclose(const1, none) and not torch.allclose(rand1, none)
        # const noise is the stored buffer: changing it changes the image
        G.synthesis.b8.conv1.noise_const.mul_(-1)
        assert not torch.allclose(G.synthesis(ws, "const"), const1)
        # with zero strengths, the noise modes agree
        for m in G.modules():
            if isinstance(m, SynthesisLayer):
                m.noise_strength.zero_()
        torch.testing.assert_close(G.synthesis(ws, "random"), G.synthesis(ws, "none"), rtol=0, atol=0)


def test_fused_and_batched_modulated_convolutions_agree():
    G = tiny_generator(16)
    with torch.no_grad():
        ws = G.mapping(torch.randn(3, G.z_dim))
        a = G.synthesis(ws, fused_modconv=True)
        b = G.synthesis(ws, fused_modconv=False)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert a.abs().max() > 0.1


def test_upsampling_filter():
    f = make_resample_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and torch.isclose(f.sum(), torch.tensor(1.0))
    torch.testing.assert_close(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)
    x = torch.ones(1, 2, 6, 6)
    up = upsample2d(x, f)
    assert up.shape == (1, 2, 12, 12)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.ones(1, 2, 10, 10))  # mean kept inside
    # The strided transposed convolution equals "upsample, then convolve" away from the borders.
    torch.manual_seed(0)
    x, w = torch.randn(2, 5, 6, 6), torch.randn(7, 5, 3, 3)
    a = conv2d_up(x, w, f)
    b = F.conv2d(upsample2d(x, f), w.flip([2, 3]), padding=1)
    assert a.shape == b.shape == (2, 7, 12, 12)
    torch.testing.assert_close(a[..., 2:-2, 2:-2], b[..., 2:-2, 2:-2], rtol=0, atol=1e-4)


def test_demodulation_normalises_output_channels():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    w = torch.randn(4, 16, 3, 3)
    s1 = torch.rand(2, 16) + 0.5
    s2 = 10 * s1  # demodulation makes the style scale irrelevant
    a = modulated_conv2d(x, w, s1, padding=1)
    b = modulated_conv2d(x, w, s2, padding=1)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    c = modulated_conv2d(x, w, s2, padding=1, demodulate=False)
    assert not torch.allclose(a, c)


def test_half_precision_modulated_conv_close_to_float32():
    torch.manual_seed(0)
    x, w, s = torch.randn(2, 8, 6, 6), torch.randn(4, 8, 3, 3), torch.randn(2, 8)
    f = make_resample_filter([1, 3, 3, 1])
    ref = modulated_conv2d(x, w, s, up=2, padding=1, resample_filter=f, fused=False)
    for fused in (True, False):
        half = modulated_conv2d(x.half(), w, s, up=2, padding=1, resample_filter=f, fused=fused)
        assert half.dtype == torch.float16
        torch.testing.assert_close(half.float(), ref, rtol=0, atol=2e-2)


def test_fp16_request_is_float32_on_cpu():
    G = tiny_generator(16, num_fp16_res=2)
    assert [G.synthesis.b4.use_fp16, G.synthesis.b8.use_fp16, G.synthesis.b16.use_fp16] == [False, True, True]
    G.synthesis.set_num_fp16_res(0)
    assert not any(getattr(G.synthesis, f"b{r}").use_fp16 for r in (4, 8, 16))
    G.synthesis.set_num_fp16_res(2)
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim))
        assert torch.equal(G.synthesis(ws, fp16=True), G.synthesis(ws))


def test_fp16_blocks_close_to_float32(monkeypatch):
    """The CUDA half-precision path, exercised on the CPU (which supports float16 convolutions)."""
    import aging.stylegan.networks as networks

    monkeypatch.setattr(networks, "half_precision_available", lambda device: True)
    G = tiny_generator(32, num_fp16_res=2, conv_clamp=256)
    dtypes = []
    hooks = [m.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
             for m in G.modules() if isinstance(m, SynthesisLayer)]
    with torch.no_grad():
        ws = G.mapping(torch.randn(2, G.z_dim))
        ref = G.synthesis(ws)
        dtypes.clear()
        for fused in (True, False):
            half = G.synthesis(ws, fp16=True, fused_modconv=fused)
            assert half.dtype == torch.float32
            torch.testing.assert_close(half, ref, rtol=0, atol=3e-2)
            assert not torch.equal(half, ref)
    for h in hooks:
        h.remove()
    # b4, b8: float32; b16, b32 (the two highest): float16
    assert dtypes == [torch.float32] * 3 + [torch.float16] * 4 + [torch.float32] * 3 + [torch.float16] * 4


def test_conv_clamp_bounds_every_layer_output():
    clamp = 0.05
    G = tiny_generator(16, conv_clamp=clamp)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.abs().max().item()))
             for m in G.modules() if isinstance(m, SynthesisLayer)]
    with torch.no_grad():
        G(torch.randn(2, G.z_dim))
    for h in hooks:
        h.remove()
    assert len(seen) == 5 and max(seen) <= clamp + 1e-7
    assert max(seen) > clamp - 1e-3  # the clamp was active, not just unused
    unclamped = tiny_generator(16)
    with torch.no_grad():
        assert not torch.allclose(unclamped(torch.ones(1, 8)), G(torch.ones(1, 8)))


@pytest.mark.skipif(not TINY.is_dir(), reason="shared fixtures not available")
def test_state_dict_names_shapes_and_order_match_nvidia():
    info = json.loads((TINY / "tiny_keys.json").read_text())
    kw = info["init_kwargs"]
    G = Generator(z_dim=kw["z_dim"], w_dim=kw["w_dim"], img_resolution=kw["img_resolution"],
                  mapping_layers=kw["mapping_kwargs"]["num_layers"],
                  **{k: v for k, v in kw["synthesis_kwargs"].items()})
    sd = G.state_dict()
    assert [(k, list(v.shape)) for k, v in sd.items()] == [(k[0], k[2]) for k in info["keys"]]
    params = {n for n, _ in G.named_parameters()}
    assert {k[0] for k in info["keys"] if k[1] == "param"} == params
    assert len(sd) == info["count"] == 94 and G.num_ws == 10


def test_ffhq_configuration_builds_with_expected_tensor_count():
    with torch.device("meta"):  # shapes only, no memory
        G = Generator(z_dim=512, w_dim=512, img_resolution=1024, mapping_layers=8, channel_base=32768,
                      channel_max=512, num_fp16_res=4, conv_clamp=256)
    assert G.num_ws == 18 and len(G.state_dict()) == 182
    assert G.synthesis.b1024.conv1.weight.shape == (32, 32, 3, 3)
    assert [r for r in G.synthesis.block_resolutions if getattr(G.synthesis, f"b{r}").use_fp16] == [128, 256, 512, 1024]
