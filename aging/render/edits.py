"""Latent edits that need no age model: style mixing and morphing between two faces.

Style mixing (Karras et al., StyleGAN): the W+ layers of the synthesis network act at growing
resolutions. For the 1024 px generator (18 layers) layers 0-3 (4-8 px) carry pose and face
shape, 4-7 (16-32 px) the features, 8-17 (64-1024 px) colour, skin and texture. Taking chosen
finer layers from another face (or from the mean of a set of old faces) changes those aspects
and keeps the coarse ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aging import io
from aging.render.video import RenderError, check_ws, load_latent


def layer_presets(num_ws: int) -> dict[str, list[int]]:
    """Named layer sets (indices into W+) for a generator with ``num_ws`` layers."""
    top_start = max(8, num_ws - num_ws // 3)
    presets = {
        "top": list(range(min(top_start, num_ws - 1), num_ws)),  # the finest layers
        "high": list(range(min(8, num_ws - 1), num_ws)),  # 64 px and up: colour, skin, texture
        "mid": list(range(min(4, num_ws - 1), min(8, num_ws))),  # 16-32 px: features
        "alternating": list(range(1, num_ws, 2)),
    }
    return presets


def parse_layers(text: str, num_ws: int) -> list[int]:
    """``8:18``, ``1,3,5``, ``12`` or a preset name (``top``, ``high``, ``mid``, ``alternating``)."""
    text = str(text).strip()
    presets = layer_presets(num_ws)
    if text in presets:
        return presets[text]
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            layers = list(range(int(a) if a else 0, int(b) if b else num_ws))
        else:
            layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RenderError(f"not a layer range: {text!r} (use e.g. 8:{num_ws}, 1,3,5 or one of "
                          f"{', '.join(presets)})") from None
    bad = [k for k in layers if not 0 <= k < num_ws]
    if bad or not layers:
        raise RenderError(f"layers {text!r} outside 0..{num_ws - 1}")
    return layers


def mix(source: np.ndarray, target: np.ndarray, layers) -> np.ndarray:
    """``source [num_ws, w_dim]`` with ``layers`` replaced by ``target``'s."""
    out = np.array(source, dtype=np.float32, copy=True)
    out[list(layers)] = target[list(layers)]
    return out


def load_target(path: str | Path, G) -> tuple[np.ndarray, int]:
    """A latent file, or a folder of latents (``*.npy``, or a subject's ``latents/``) averaged:
    (``[num_ws, w_dim]``, number of latents)."""
    path = Path(path)
    if path.is_dir():
        src = path / "latents" if (path / "latents").is_dir() else path
        files = io.data_files(src, (".npy",))
        if not files:
            raise RenderError(f"{src}: no .npy latents to average")
        lat = np.stack([load_latent(f, G) for f in files])
        return lat.mean(axis=0), len(files)
    return load_latent(path, G), 1


def lerp(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` latents from ``a`` to ``b`` (both included) on a straight line."""
    t = np.linspace(0.0, 1.0, frames, dtype=np.float64).reshape((-1,) + (1,) * a.ndim)
    return ((1 - t) * a[None] + t * b[None]).astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """Spherical interpolation (for Gaussian ``z``): constant norm profile along the path."""
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    cos = np.clip(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)), -1.0, 1.0)
    omega = np.arccos(cos)
    t = np.linspace(0.0, 1.0, frames)
    if omega < 1e-6:
        return lerp(a, b, frames)
    out = (np.sin((1 - t) * omega)[:, None] * a64 + np.sin(t * omega)[:, None] * b64) / np.sin(omega)
    return out.reshape((frames,) + a.shape).astype(np.float32)


def morph_ws(G, a: np.ndarray, b: np.ndarray, frames: int, space: str = "w", *,
             names: tuple[str, str] = ("A", "B")) -> np.ndarray:
    """W+ latents of a morph from ``a`` to ``b``: ``[frames, num_ws, w_dim]``.

    ``space="w"``: ``a``, ``b`` are W/W+ latents, interpolated linearly. ``space="z"``: they are
    ``[z_dim]`` vectors, interpolated spherically and mapped (truncation psi 1). ``names`` (e.g.
    their files) name them in errors.
    """
    if frames < 2:
        raise RenderError("a morph needs at least 2 frames")
    if space == "w":
        a, b = check_ws(a, G, names[0])[0], check_ws(b, G, names[1])[0]
        return lerp(a, b, frames)
    if space != "z":
        raise RenderError(f"unknown space {space!r} (use w or z)")
    import torch

    for name, v in zip(names, (a, b)):
        if np.asarray(v).reshape(-1).shape != (G.z_dim,):
            raise RenderError(f"{name}: wrong z shape {np.asarray(v).shape}; the generator takes ({G.z_dim},)")
    zs = slerp(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1), frames)
    device = next(G.parameters()).device
    with torch.no_grad():
        return G.mapping(torch.from_numpy(zs).to(device)).cpu().numpy()
