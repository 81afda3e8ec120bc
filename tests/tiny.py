"""Tiny random generators that behave like trained ones where the tests need it (CPU, fast)."""

from __future__ import annotations

import torch

from aging.stylegan import Generator


def photo_generator(res: int = 32, z_dim: int = 16, w_dim: int = 16, *, seed: int = 0,
                    image_std: float = 0.5, **kw) -> Generator:
    """A random generator whose images look statistically like photos.

    Noise buffers are random, ``w_avg`` is measured (a random network never tracked it), and the
    ToRGB weights are scaled so that images have a standard deviation of ``image_std`` in
    ``[-1, 1]`` units (ToRGB is linear in its weights). Eval mode, ``requires_grad`` off.
    """
    from aging.encode.projector import w_stats

    kw = {"mapping_layers": 2, "channel_base": 8 * res, "channel_max": 16, **kw}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        G = Generator(z_dim=z_dim, w_dim=w_dim, img_resolution=res, **kw)
        for name, buf in G.named_buffers():
            if name.endswith("noise_const"):
                buf.copy_(torch.randn_like(buf))
        G.eval().requires_grad_(False)
        G.mapping.w_avg.copy_(w_stats(G)[0])
        with torch.no_grad():
            scale = image_std / G(torch.randn(64, G.z_dim)).std().item()
            for name, p in G.named_parameters():
                if "torgb" in name and name.endswith("weight"):
                    p.mul_(scale)
    return G


def save_photos(G: Generator, folder, n: int, *, first_age: int = 7000, step: int = 10, seed: int = 0,
                motion: float = 0.1) -> list[int]:
    """Write ``n`` photos ``<age_days>.png`` (8-bit RGB at G's resolution) of one face that moves
    slowly through W+ (``motion`` times the distance between two random faces over the sequence).
    Returns the ages."""
    from pathlib import Path

    from PIL import Image

    from aging.stylegan import to_uint8

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        w0, w1 = G.mapping(z, truncation_psi=0.7)
        ws = w0 + torch.linspace(0, 1, n)[:, None, None] * (w1 - w0) * motion  # [n, num_ws, w_dim]
        frames = to_uint8(G.synthesis(ws))
    ages = [first_age + step * k for k in range(n)]
    for age, frame in zip(ages, frames):
        Image.fromarray(frame).save(folder / f"{age}.png")
    return ages
