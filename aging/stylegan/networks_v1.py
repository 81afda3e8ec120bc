"""StyleGAN v1 generator (Karras et al. 2019) in PyTorch, behind the API of the StyleGAN2 one.

Written from the paper and the published file format, for inference with NVIDIA's original
(TensorFlow) weights::

    G = GeneratorV1(GeneratorV1Config(img_resolution=1024))   # the FFHQ configuration
    ws = G.mapping(z, truncation_psi=0.7)                     # [N, num_ws, w_dim]; cut-off 8
    img = G.synthesis(ws, noise_mode="const")                 # [N, 3, R, R], no output transform

What differs from StyleGAN2: per synthesis layer, the convolution output gets per-pixel noise
(with a per-channel strength) and a bias, then leaky ReLU, instance normalisation and the style
(an affine map of ``w`` giving a per-channel scale ``1 + s`` and shift ``b``); 2x up-sampling is
nearest-neighbour then a 3x3 convolution (or, at 128 px and above, one fused stride-2 transposed
convolution), followed by a [1, 2, 1] blur; the image comes from the last ``ToRGB`` layer only.
Equalised learning rate: every weight is stored raw and scaled at run time by ``gain /
sqrt(fan_in) * lr_multiplier`` (the mapping network's biases by ``lr_multiplier``).

:func:`tf_variable_table` names, for a configuration, every variable of NVIDIA's pickled ``Gs``
with its shape and the parameter or buffer it fills (:func:`load_tf_variables`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aging.stylegan.networks import NOISE_MODES, Generator, check_shape, config_or_fields

ARCHITECTURE = "stylegan1"
LRELU_SLOPE = 0.2
EPS = 1e-8


@dataclass(frozen=True)
class GeneratorV1Config:
    """Architecture of a StyleGAN v1 generator (defaults: FFHQ 1024 px, 26,219,627 parameters)."""

    z_dim: int = 512  # latent_size: size of z
    w_dim: int = 512  # dlatent_size: size of one W+ row
    img_resolution: int = 1024  # output size in px: a power of two >= 4
    img_channels: int = 3
    mapping_layers: int = 8  # dense layers of the mapping network
    mapping_features: int = 512  # mapping_fmaps: width of its hidden layers
    mapping_lr_multiplier: float = 0.01  # mapping_lrmul
    fmap_base: int = 8192  # channels of a stage: min(fmap_base // 2**stage, fmap_max)
    fmap_max: int = 512
    truncation_cutoff: int = 8  # the checkpoint's rule: truncate the first 8 W+ rows

    def __post_init__(self):
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "mapping_features", "fmap_base",
                     "fmap_max"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def log2_res(self) -> int:
        return int(math.log2(self.img_resolution))

    @property
    def num_ws(self) -> int:
        return 2 * self.log2_res - 2

    def channels(self, stage: int) -> int:
        """Feature maps of stage ``stage`` (the block at ``2**(stage + 1)`` px uses ``stage``)."""
        return min(int(self.fmap_base / 2.0 ** stage), self.fmap_max)


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, LRELU_SLOPE)


class EqualizedDense(nn.Module):
    """``y = x @ (W * gain / sqrt(in) * lrmul).T + b * lrmul`` (weight stored ``[out, in]``)."""

    def __init__(self, in_features: int, out_features: int, *, gain: float, lr_multiplier: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.zeros([out_features]))
        self.weight_gain = gain / math.sqrt(in_features) * lr_multiplier
        self.lr_multiplier = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ (self.weight * self.weight_gain).t() + self.bias * self.lr_multiplier


class MappingNetworkV1(nn.Module):
    """``z [N, z_dim] -> ws [N, num_ws, w_dim]``: pixel norm, dense + leaky ReLU layers, broadcast,
    truncation toward ``w_avg`` (the ``dlatent_avg`` of the checkpoint)."""

    def __init__(self, config: GeneratorV1Config):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = config.z_dim, config.w_dim, config.num_ws
        self.num_layers = config.mapping_layers
        self.default_cutoff = config.truncation_cutoff
        sizes = [config.z_dim] + [config.mapping_features] * (config.mapping_layers - 1) + [config.w_dim]
        for i in range(self.num_layers):
            setattr(self, f"fc{i}", EqualizedDense(sizes[i], sizes[i + 1], gain=math.sqrt(2),
                                                   lr_multiplier=config.mapping_lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([config.w_dim]))  # [w_dim]

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        check_shape(z, [None, self.z_dim], "z")  # [N, z_dim]
        x = z.to(torch.float32)
        x = x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + EPS)
        for i in range(self.num_layers):
            x = leaky_relu(getattr(self, f"fc{i}")(x))  # [N, features]
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cut = self.default_cutoff if truncation_cutoff is None else truncation_cutoff
            coef = torch.ones([1, self.num_ws, 1], device=ws.device)
            coef[:, :cut] = truncation_psi
            ws = self.w_avg + (ws - self.w_avg) * coef  # as the checkpoint's own rule evaluates it
        return ws


class StyledEpilogue(nn.Module):
    """After a convolution: noise, bias, leaky ReLU, instance norm, style (scale ``1 + s``, shift)."""

    def __init__(self, channels: int, *, resolution: int, w_dim: int):
        super().__init__()
        self.noise_strength = nn.Parameter(torch.zeros([channels]))
        self.bias = nn.Parameter(torch.zeros([channels]))
        self.style = EqualizedDense(w_dim, 2 * channels, gain=1.0)
        self.register_buffer("noise_const", torch.randn([1, 1, resolution, resolution]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str) -> torch.Tensor:
        n, c, h, width = x.shape  # [N, C, H, W]
        if noise_mode == "const":
            x = x + self.noise_const * self.noise_strength.reshape(1, -1, 1, 1)
        elif noise_mode == "random":
            noise = torch.randn([n, 1, h, width], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.reshape(1, -1, 1, 1)
        x = leaky_relu(x + self.bias.reshape(1, -1, 1, 1))
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(x.square().mean(dim=(2, 3), keepdim=True) + EPS)
        style = self.style(w).reshape(n, 2, c, 1, 1)  # [N, 2, C, 1, 1]
        return x * (style[:, 0] + 1) + style[:, 1]


class ConvV1(nn.Module):
    """3x3 convolution with equalised learning rate; ``up``: 2x up-sampling first, then a blur.

    ``fused`` (used at 128 px and above) does the up-sampling and the convolution as one
    stride-2 transposed convolution with the 3x3 kernel spread over 4x4.
    """

    def __init__(self, in_channels: int, out_channels: int, *, up: bool = False, fused: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
        self.weight_gain = math.sqrt(2) / math.sqrt(in_channels * 9)
        self.up, self.fused = up, fused
        if up:
            f = torch.tensor([1.0, 2.0, 1.0])
            f = torch.outer(f, f) / 16
            self.register_buffer("blur", f.reshape(1, 1, 3, 3).repeat(out_channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain  # [out, in, 3, 3]
        if not self.up:
            return F.conv2d(x, w, padding=1)
        if self.fused:
            w = F.pad(w, [1, 1, 1, 1])
            w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]  # [out, in, 4, 4]
            x = F.conv_transpose2d(x, w.transpose(0, 1), stride=2, padding=1)
        else:
            x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
        return F.conv2d(x, self.blur, padding=1, groups=x.shape[1])


class ToRGBV1(nn.Module):
    """1x1 convolution to ``img_channels`` (gain 1) plus bias."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain) + self.bias.reshape(1, -1, 1, 1)


class SynthesisBlockV1(nn.Module):
    """Two styled layers at one resolution (4 px: learned constant + conv; above: up-conv + conv)
    and the ``ToRGB`` of that resolution (only the last one is used once fully grown)."""

    def __init__(self, in_channels: int, out_channels: int, *, resolution: int, config: GeneratorV1Config):
        super().__init__()
        self.resolution = resolution
        if resolution == 4:
            self.const = nn.Parameter(torch.ones([1, out_channels, 4, 4]))
        else:
            self.conv0 = ConvV1(in_channels, out_channels, up=True, fused=resolution >= 128)
        self.epi0 = StyledEpilogue(out_channels, resolution=resolution, w_dim=config.w_dim)
        self.conv1 = ConvV1(out_channels, out_channels)
        self.epi1 = StyledEpilogue(out_channels, resolution=resolution, w_dim=config.w_dim)
        self.torgb = ToRGBV1(out_channels, config.img_channels)

    def forward(self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        # ws: [N, 2, w_dim]
        if self.resolution == 4:
            x = self.const.to(ws.dtype).repeat(ws.shape[0], 1, 1, 1)
        else:
            x = self.conv0(x)
        x = self.epi0(x, ws[:, 0], noise_mode)
        return self.epi1(self.conv1(x), ws[:, 1], noise_mode)


class SynthesisNetworkV1(nn.Module):
    """``ws [N, num_ws, w_dim] -> images [N, img_channels, R, R]`` (raw, not clamped)."""

    def __init__(self, config: GeneratorV1Config):
        super().__init__()
        self.w_dim, self.num_ws, self.img_resolution = config.w_dim, config.num_ws, config.img_resolution
        self.block_resolutions = [2 ** i for i in range(2, config.log2_res + 1)]
        in_channels = 0
        for res in self.block_resolutions:
            out_channels = config.channels(int(math.log2(res)) - 1)
            setattr(self, f"b{res}", SynthesisBlockV1(in_channels, out_channels, resolution=res, config=config))
            in_channels = out_channels

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", *, fp16: bool = False) -> torch.Tensor:
        """Decode W+ latents; ``noise_mode``: stored noise (``const``), fresh (``random``), none.
        ``fp16`` is accepted for the StyleGAN2 API and ignored (v1 runs in float32)."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        check_shape(ws, [None, self.num_ws, self.w_dim], "ws")  # [N, num_ws, w_dim]
        ws = ws.to(torch.float32)
        x = None
        for i, res in enumerate(self.block_resolutions):
            x = getattr(self, f"b{res}")(x, ws[:, 2 * i:2 * i + 2], noise_mode)
        return getattr(self, f"b{self.img_resolution}").torgb(x)  # [N, C, R, R]


class GeneratorV1(nn.Module):
    """StyleGAN v1 generator: :class:`MappingNetworkV1` then :class:`SynthesisNetworkV1`.

    Exposes ``config``, ``z_dim``, ``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels``,
    ``w_avg`` and ``architecture = "stylegan1"``, like :class:`~.networks.Generator`.
    """

    architecture = ARCHITECTURE

    def __init__(self, config: GeneratorV1Config | None = None, /, **fields):
        super().__init__()
        self.config = config = config_or_fields(GeneratorV1Config, config, fields)
        self.z_dim, self.w_dim = config.z_dim, config.w_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.num_ws = config.num_ws
        self.synthesis = SynthesisNetworkV1(config)
        self.mapping = MappingNetworkV1(config)

    # The same ``w_avg`` (here the checkpoint's ``dlatent_avg``) and ``forward(z, truncation_psi,
    # noise_mode, *, truncation_cutoff, fp16)`` as the StyleGAN2 generator.
    w_avg = Generator.w_avg
    forward = Generator.forward


# ---------------------------------------------------------------------------------------------
# NVIDIA's variable names -> this module's state dict


def _hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    return a.transpose(3, 2, 0, 1)


def _io_to_oi(a: np.ndarray) -> np.ndarray:
    return a.T


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _layer_rows(tf: str, torch_prefix: str, fmaps: int, w_dim: int) -> list:
    return [(f"{tf}/Noise/weight", f"{torch_prefix}.noise_strength", (fmaps,), _same),
            (f"{tf}/bias", f"{torch_prefix}.bias", (fmaps,), _same),
            (f"{tf}/StyleMod/weight", f"{torch_prefix}.style.weight", (w_dim, 2 * fmaps), _io_to_oi),
            (f"{tf}/StyleMod/bias", f"{torch_prefix}.style.bias", (2 * fmaps,), _same)]


def tf_variable_table(config: GeneratorV1Config) -> list[tuple[str, str, tuple, Callable | None]]:
    """Every variable of a pickled ``Gs``: ``(tf_name, state_dict_name, tf_shape, to_torch)``.

    ``state_dict_name`` None (with ``to_torch`` None) marks a variable that is checked and not
    kept (the ``lod`` scalars, which must be 0: a fully grown generator).
    """
    rows: list = [("lod", None, (), None), ("dlatent_avg", "mapping.w_avg", (config.w_dim,), _same),
                  ("G_synthesis/lod", None, (), None)]
    s, c = "G_synthesis/", config.img_channels
    for i, res in enumerate(2 ** k for k in range(2, config.log2_res + 1)):
        for j in range(2):
            rows.append((f"{s}noise{2 * i + j}", f"synthesis.b{res}.epi{j}.noise_const", (1, 1, res, res), _same))
    in_ch = 0
    for i, res in enumerate(2 ** k for k in range(2, config.log2_res + 1)):
        fm, b, tf = config.channels(i + 1), f"synthesis.b{res}", f"{s}{res}x{res}"
        if res == 4:
            rows.append((f"{tf}/Const/const", f"{b}.const", (1, fm, 4, 4), _same))
            rows += _layer_rows(f"{tf}/Const", f"{b}.epi0", fm, config.w_dim)
            rows.append((f"{tf}/Conv/weight", f"{b}.conv1.weight", (3, 3, fm, fm), _hwio_to_oihw))
            rows += _layer_rows(f"{tf}/Conv", f"{b}.epi1", fm, config.w_dim)
        else:
            rows.append((f"{tf}/Conv0_up/weight", f"{b}.conv0.weight", (3, 3, in_ch, fm), _hwio_to_oihw))
            rows += _layer_rows(f"{tf}/Conv0_up", f"{b}.epi0", fm, config.w_dim)
            rows.append((f"{tf}/Conv1/weight", f"{b}.conv1.weight", (3, 3, fm, fm), _hwio_to_oihw))
            rows += _layer_rows(f"{tf}/Conv1", f"{b}.epi1", fm, config.w_dim)
        lod = config.log2_res - 2 - i
        rows += [(f"{s}ToRGB_lod{lod}/weight", f"{b}.torgb.weight", (1, 1, fm, c), _hwio_to_oihw),
                 (f"{s}ToRGB_lod{lod}/bias", f"{b}.torgb.bias", (c,), _same)]
        in_ch = fm
    sizes = [config.z_dim] + [config.mapping_features] * (config.mapping_layers - 1) + [config.w_dim]
    for i in range(config.mapping_layers):
        rows += [(f"G_mapping/Dense{i}/weight", f"mapping.fc{i}.weight", (sizes[i], sizes[i + 1]), _io_to_oi),
                 (f"G_mapping/Dense{i}/bias", f"mapping.fc{i}.bias", (sizes[i + 1],), _same)]
    return rows


def tf_state_dict(config: GeneratorV1Config, variables: dict[str, np.ndarray], *, where: str) -> dict:
    """Map NVIDIA's variables to a state dict by :func:`tf_variable_table`, strictly: every
    variable known, none missing, every shape exact, every value finite, ``lod`` 0.

    Raises ``ValueError`` (one line, prefixed with ``where``) on the first problem.
    """
    table = tf_variable_table(config)
    names = {row[0] for row in table}
    unknown = [k for k in variables if k not in names]
    missing = [row[0] for row in table if row[0] not in variables]
    if unknown or missing:
        raise ValueError(f"{where}: not a StyleGAN v1 generator of this configuration: "
                         f"unknown {unknown[:5]}, missing {missing[:5]}")
    state = {}
    for tf_name, torch_name, shape, convert in table:
        a = variables[tf_name]
        if tuple(a.shape) != shape:
            raise ValueError(f"{where}: variable '{tf_name}' has shape {list(a.shape)}, expected {list(shape)}")
        if not np.isfinite(a).all():
            raise ValueError(f"{where}: variable '{tf_name}' holds NaN or inf values")
        if torch_name is None:
            if float(a) != 0.0:
                raise ValueError(f"{where}: '{tf_name}' is {float(a)}: not a fully grown generator (lod 0)")
            continue
        state[torch_name] = torch.from_numpy(np.ascontiguousarray(convert(a), dtype=np.float32))
    return state
