"""The StyleGAN decoders (StyleGAN2, and StyleGAN v1 from NVIDIA's TensorFlow pickles): generator
networks, safe checkpoint loaders, known public weights. Both generators have the same API.

``from aging.stylegan import load_generator`` is the entry point::

    G = load_generator("stylegan2-ffhq-1024", device="cuda")   # registry name (downloaded) or path
    ws = G.mapping(z, truncation_psi=0.7)                      # [N, num_ws, w_dim]
    img = G.synthesis(ws, noise_mode="const")                  # [N, 3, R, R], about [-1, 1]
    G1 = load_generator("karras2019stylegan-ffhq-1024x1024.pkl")  # StyleGAN v1: the same calls

torch is imported on first use of a torch-based name, so ``aging.stylegan.weights`` (the
registry and downloader) works without it.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Generator": "aging.stylegan.networks",
    "GeneratorConfig": "aging.stylegan.networks",
    "MappingNetwork": "aging.stylegan.networks",
    "SynthesisNetwork": "aging.stylegan.networks",
    "GeneratorV1": "aging.stylegan.networks_v1",
    "GeneratorV1Config": "aging.stylegan.networks_v1",
    "CheckpointError": "aging.stylegan.checkpoints",
    "load_checkpoint": "aging.stylegan.checkpoints",
    "save_generator": "aging.stylegan.checkpoints",
    "REGISTRY": "aging.stylegan.weights",
    "WeightsError": "aging.stylegan.weights",
    "download_weights": "aging.stylegan.weights",
    "resolve_generator": "aging.stylegan.weights",
}

__all__ = ["load_generator", "to_uint8", *_LAZY]


def load_generator(path_or_name, device="cpu", *, entry: str = "G_ema"):
    """Load a StyleGAN2 or StyleGAN v1 generator for inference (the format is recognised).

    Parameters
    ----------
    path_or_name : str or path-like
        An NVIDIA network pickle (StyleGAN2-ADA / StyleGAN3 PyTorch, or StyleGAN v1 TensorFlow,
        read from its ``Gs`` without TensorFlow), a checkpoint in the project's format (directory
        or ``.pt`` / ``.json``), or the name of a registry checkpoint already downloaded with
        ``aging weights download NAME``. Nothing is downloaded here.
    device : str or torch.device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (CUDA when available), resolved by
        :func:`aging.devices.resolve_device`.
    entry : str
        For StyleGAN2 network pickles, the entry to read (``G_ema``); v1 pickles always give ``Gs``.

    Returns
    -------
    Generator or GeneratorV1
        float32, in eval mode, with ``requires_grad`` off on every parameter.

    Raises
    ------
    aging.stylegan.weights.WeightsError
        Unknown name, or a registry checkpoint that has not been downloaded.
    aging.stylegan.checkpoints.CheckpointError
        The file is unsafe, of unknown format, or does not fit a StyleGAN2 generator.
    aging.devices.DeviceError
        Not a device name, or CUDA asked for where there is none.
    """
    from aging.devices import resolve_device
    from aging.stylegan.checkpoints import load_checkpoint
    from aging.stylegan.weights import resolve_generator

    if isinstance(device, str):
        device = resolve_device(device, option="device")
    G = load_checkpoint(resolve_generator(path_or_name), entry=entry)
    return G.eval().requires_grad_(False).to(device)


def to_uint8(images):
    """Generator images ``[N, 3, H, W]`` (about ``[-1, 1]``) -> uint8 ``[N, H, W, 3]`` numpy, the one
    conversion every stage uses: clamp to ``[-1, 1]``, map to ``[0, 255]`` and round."""
    x = (images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5  # [N, 3, H, W]
    return x.round().byte().permute(0, 2, 3, 1).numpy()


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aging.stylegan' has no attribute {name!r}")
