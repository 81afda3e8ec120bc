"""VGG16 convolutional features (Simonyan & Zisserman, 2015) for perceptual losses.

Our own definition of the 31-layer ``features`` stack, with the layer indices of torchvision's
``vgg16``, so that a torchvision-format state dict (``features.N.weight`` / ``features.N.bias``;
``classifier.*`` keys are ignored) loads through an explicit name/shape table that refuses
anything missing, unexpected or misshapen. torchvision itself is not needed (nor importable
beside this project's torch build).

Weights are never downloaded here. They come from a file the user gives (``--vgg-weights``) or
from the cache: ``$AGING_CACHE/vgg16.pth`` (default cache ``~/.cache/aging``), then
``$AGING_CACHE/weights/vgg16.pth``, then torchvision's own cache file
``$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth``. Files are read with
``torch.load(..., weights_only=True)``: a state dict is data, never code.

Layer indices (``C`` conv 3x3 + bias, ``R`` ReLU, ``M`` 2x2 max-pool)::

    0 C 3->64    2 C 64->64    4 M
    5 C 64->128  7 C 128->128  9 M
    10 C 128->256 12 C 256->256 14 C 256->256 16 M
    17 C 256->512 19 C 512->512 21 C 512->512 23 M
    24 C 512->512 26 C 512->512 28 C 512->512 30 M      (ReLUs at every odd index up to 29)
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from aging.errors import AgingError

# torchvision's configuration "D": channels of each conv, "M" for a max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

# Outputs of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the taps of LPIPS and of most
# perceptual losses built on VGG16.
DEFAULT_TAPS = (3, 8, 15, 22, 29)

# ImageNet statistics the torchvision weights were trained with (inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CACHE_FILENAME = "vgg16.pth"
TORCHVISION_FILENAME = "vgg16-397923af.pth"


class VGGWeightsError(AgingError, ValueError):
    """VGG16 weights are missing or do not fit (one line; names the file)."""


def make_features() -> nn.Sequential:
    """The ``features`` stack of VGG16 with torchvision's indices (random init)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers.append(nn.Conv2d(in_ch, v, kernel_size=3, padding=1))
            layers.append(nn.ReLU(inplace=False))
            in_ch = v
    return nn.Sequential(*layers)


def features_table() -> dict[str, tuple[int, ...]]:
    """``{"features.N.weight": shape, ...}``: every tensor a VGG16 state dict must provide."""
    table = {}
    for i, m in enumerate(make_features()):
        if isinstance(m, nn.Conv2d):
            table[f"features.{i}.weight"] = tuple(m.weight.shape)
            table[f"features.{i}.bias"] = tuple(m.bias.shape)
    return table


class VGG16Features(nn.Module):
    """VGG16 ``features`` returning the activations at chosen layer indices.

    Parameters
    ----------
    taps : sequence of int
        Indices into ``features`` whose outputs are returned (default: the five ReLUs before
        each max-pool). The stack is evaluated only up to the last tap.
    normalize_input : bool
        Inputs are images in ``[-1, 1]``; map them to ``[0, 1]`` and apply ImageNet's
        normalisation before the first layer.
    """

    def __init__(self, taps=DEFAULT_TAPS, *, normalize_input: bool = True):
        super().__init__()
        self.features = make_features()
        taps = tuple(int(t) for t in taps)
        if not taps or sorted(set(taps)) != list(taps) or taps[0] < 0 or taps[-1] >= len(self.features):
            raise ValueError(f"taps must be increasing indices in 0..{len(self.features) - 1}, got {taps}")
        self.taps = taps
        self.normalize_input = normalize_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x [N, 3, H, W]`` -> one ``[N, C_k, H_k, W_k]`` tensor per tap."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG16 input: expected shape [N, 3, H, W], got {list(x.shape)}")
        if self.normalize_input:
            x = ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        wanted = iter(self.taps)
        nxt = next(wanted)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == nxt:
                out.append(x)
                nxt = next(wanted, None)
                if nxt is None:
                    break
        return out


# ---------------------------------------------------------------------------------------------
# Weights


def default_weight_paths() -> list[Path]:
    """Where cached VGG16 weights are looked for, in order."""
    from aging.stylegan.weights import cache_dir

    cache = cache_dir()
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")).expanduser()
    return [cache / CACHE_FILENAME, cache / "weights" / CACHE_FILENAME,
            torch_home / "hub" / "checkpoints" / TORCHVISION_FILENAME]


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """The VGG16 weight file to use: ``path`` if given, else the first cached file that exists.

    Raises
    ------
    VGGWeightsError
        ``path`` does not exist, or none is given and nothing is cached.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise VGGWeightsError(f"{p}: VGG16 weight file not found")
        return p
    for p in default_weight_paths():
        if p.is_file():
            return p
    where = default_weight_paths()[0]
    raise VGGWeightsError(
        "perceptual loss needs VGG16 weights: pass --vgg-weights FILE (a torchvision-format vgg16 "
        f"state dict, e.g. vgg16-397923af.pth) or put it at {where}; or use --loss mse")


def check_state_dict(state: object, source: str = "state dict") -> dict[str, torch.Tensor]:
    """Select and validate the ``features.*`` tensors of a torchvision-format VGG16 state dict.

    Returns the ``features`` entries renamed for :attr:`VGG16Features.features` (``"N.weight"``),
    as float32. ``classifier.*`` entries are ignored; any other key, a missing key, a shape
    mismatch or a non-finite value raises :class:`VGGWeightsError` naming ``source``.
    """
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{source}: expected a state dict (mapping of names to tensors), "
                              f"got {type(state).__name__}")
    table = features_table()
    unexpected = [k for k in state if not (isinstance(k, str) and (k in table or k.startswith("classifier.")))]
    if unexpected:
        raise VGGWeightsError(f"{source}: not a torchvision vgg16 state dict: unexpected key {unexpected[0]!r}"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    missing = [k for k in table if k not in state]
    if missing:
        raise VGGWeightsError(f"{source}: missing key {missing[0]!r}"
                              + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    out = {}
    for key, shape in table.items():
        t = state[key]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise VGGWeightsError(f"{source}: {key} is not a floating-point tensor")
        if tuple(t.shape) != shape:
            raise VGGWeightsError(f"{source}: {key} has shape {list(t.shape)}, expected {list(shape)}")
        if not torch.isfinite(t).all():
            raise VGGWeightsError(f"{source}: {key} contains NaN or inf")
        out[key[len("features."):]] = t.detach().to(torch.float32)
    return out


def load_vgg16(path: str | os.PathLike | None = None, *, device="cpu", taps=DEFAULT_TAPS) -> VGG16Features:
    """Load VGG16 features from a torchvision-format state dict file (see :func:`find_weights`).

    Returns the network in eval mode with ``requires_grad`` off.
    """
    p = find_weights(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt, pickled code, not a torch file: one line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise VGGWeightsError(f"{p}: cannot read VGG16 weights ({msg})") from None
    net = VGG16Features(taps)
    net.features.load_state_dict(check_state_dict(state, str(p)), strict=True)
    return net.eval().requires_grad_(False).to(device)
