"""StyleGAN2 generator (config-f), in plain PyTorch.

The architecture of Karras et al., "Analyzing and Improving the Image Quality of StyleGAN"
(CVPR 2020), as released in NVIDIA's StyleGAN2-ADA PyTorch code: a mapping network
``z -> w`` (8 equalised-learning-rate layers with a 100x smaller learning rate, a tracked mean
``w_avg`` for truncation) and a synthesis network ``W+ -> image`` (learned constant input,
modulated/demodulated 3x3 convolutions, FIR up-sampling with the ``[1, 3, 3, 1]`` filter,
per-pixel noise with a learned strength, skip ToRGB outputs, optional output clamp).

Parameter and buffer names, shapes and state-dict order are those of NVIDIA's networks, so a
state dict read from one of their pickles (see :mod:`aging.stylegan.checkpoints`) loads with
``strict=True``. The numerics follow the same order of operations, so outputs match theirs to
float32 rounding. No C++/CUDA extension: the up-sampling filter is a depthwise convolution.

Shapes are written as comments: ``N`` batch, ``C`` channels, ``H, W`` spatial size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NOISE_MODES = ("const", "random", "none")
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through a leaky ReLU
KERNEL_SIZE = 3  # of every synthesis convolution (the only size NVIDIA's checkpoints use)


# ---------------------------------------------------------------------------------------------
# Functional building blocks


def check_shape(x: torch.Tensor, shape: Sequence[int | None], name: str) -> None:
    """Raise ``ValueError`` unless ``x.shape`` matches ``shape`` (``None`` matches any size)."""
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name}: expected shape {want}, got {list(x.shape)}")


def make_resample_filter(taps: Sequence[float]) -> torch.Tensor:
    """2-D low-pass filter: the outer product of ``taps`` with itself, normalised to sum 1.

    ``[1, 3, 3, 1]`` gives the 4x4 filter stored in every ``resample_filter`` buffer.
    """
    t = torch.as_tensor(list(taps), dtype=torch.float32)  # [k]
    if t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"resample filter taps must be a non-empty 1-D list, got {taps!r}")
    f = torch.outer(t, t)  # [k, k]
    return f / f.sum()


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1,
              pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Up-sample (zero insertion), pad, FIR-filter, down-sample: the resampling primitive.

    Parameters
    ----------
    x : tensor [N, C, H, W]
    f : tensor [fh, fw]
        The 2-D filter (applied as a true convolution; the filters used here are symmetric).
    up, down : int
        Integer up- and down-sampling factors.
    pad : (left, right, top, bottom)
        Padding after up-sampling; negative values crop.
    gain : float
        Overall gain; up-sampling by ``u`` needs ``u ** 2`` to keep the signal's mean.

    Returns
    -------
    tensor [N, C, (H * up + top + bottom - fh + 1) // down, ...]
    """
    n, c, h, w = x.shape
    left, right, top, bottom = pad
    if up > 1:  # put up - 1 zeros after every sample, in both directions
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    x = x[:, :, max(-top, 0):x.shape[2] - max(-bottom, 0), max(-left, 0):x.shape[3] - max(-right, 0)]
    k = (f * gain).to(x.dtype).flip([0, 1])  # conv2d correlates; flip for a true convolution
    k = k[None, None].repeat(c, 1, 1, 1)  # [C, 1, fh, fw], one filter per channel
    x = F.conv2d(x, k, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: torch.Tensor, f: torch.Tensor, *, up: int = 2) -> torch.Tensor:
    """``[N, C, H, W] -> [N, C, H * up, W * up]``: zero insertion then the FIR filter."""
    fh, fw = f.shape
    pad = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, pad=pad, gain=up * up)


def bias_act(x: torch.Tensor, b: torch.Tensor, *, act: str = "linear", gain: float = 1.0,
             clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply ``act`` (``linear`` or ``lrelu``), scale, clamp."""
    x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r} (linear or lrelu)")
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_up(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, *, up: int = 2, padding: int = 1,
              groups: int = 1) -> torch.Tensor:
    """Transposed convolution with stride ``up`` followed by the FIR filter ``f``.

    Away from the borders this equals :func:`upsample2d` followed by a convolution with the
    spatially flipped ``w``, at a quarter of the cost; the padding (and so the border values)
    is that of NVIDIA's implementation. ``w`` is ``[groups * O, I, kh, kw]`` as for ``conv2d``;
    the output is ``[N, groups * O, H * up, W * up]`` for ``x`` of shape ``[N, groups * I, H, W]``.
    """
    out_ch, in_ch, kh, kw = w.shape
    fh, fw = f.shape
    # Padding of the equivalent "filter then convolve" path, moved after the transposed conv.
    px0 = padding + (fw + up - 1) // 2 - (kw - 1)
    px1 = padding + (fw - up) // 2 - (kw - up)
    py0 = padding + (fh + up - 1) // 2 - (kh - 1)
    py1 = padding + (fh - up) // 2 - (kh - up)
    # conv_transpose2d wants [groups * I, O, kh, kw].
    w = w.reshape(groups, out_ch // groups, in_ch, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_ch, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, w, stride=up, groups=groups)  # [N, O, (H-1)*up+kh, ...]
    return upfirdn2d(x, f, pad=(px0, px1, py0, py1), gain=up * up)


def _conv(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None, *, up: int, padding: int,
          groups: int = 1) -> torch.Tensor:
    """A plain convolution, or with ``up > 1`` the up-sampling one of :func:`conv2d_up`."""
    if up > 1:
        return conv2d_up(x, w, f, up=up, padding=padding, groups=groups)
    return F.conv2d(x, w, padding=padding, groups=groups)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, up: int = 1,
                     padding: int = 0, resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     fused: bool = True) -> torch.Tensor:
    """Convolution whose weights are scaled per sample by ``styles`` (and renormalised).

    Parameters
    ----------
    x : tensor [N, I, H, W]
    weight : tensor [O, I, kh, kw]
    styles : tensor [N, I]
    up : int
        1, or 2 for a transposed convolution followed by ``resample_filter``.
    demodulate : bool
        Divide each output channel by the norm of its modulated weights.
    fused : bool
        One grouped convolution with per-sample weights (best for batch 1), or modulate the
        activations and share one convolution across the batch (best for large batches).

    Returns
    -------
    tensor [N, O, H * up, W * up]
        Before noise and bias, which the caller adds.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    check_shape(styles, [n, in_ch], "styles")
    conv_kw = dict(up=up, padding=padding)

    # Half precision: rescale so the modulated weights cannot overflow (no effect after
    # demodulation, which is scale invariant).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / math.sqrt(in_ch * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))  # [O, I, kh, kw]
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)  # [N, I]

    dcoefs = None
    if demodulate:
        # |w * s|^2 summed over (I, kh, kw) = s^2 @ (|w|^2 summed over kh, kw): no [N, O, I, kh, kw] tensor
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, O]

    if fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # [N, O, I, kh, kw]
        if demodulate:
            w = w * dcoefs.reshape(n, out_ch, 1, 1, 1)
        x = x.reshape(1, n * in_ch, *x.shape[2:])  # [1, N*I, H, W]
        w = w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype)  # [N*O, I, kh, kw]
        x = _conv(x, w, resample_filter, groups=n, **conv_kw)
        return x.reshape(n, out_ch, *x.shape[2:])  # [N, O, H', W']

    x = x * styles.to(x.dtype).reshape(n, in_ch, 1, 1)
    x = _conv(x, weight.to(x.dtype), resample_filter, **conv_kw)  # [N, O, H', W']
    if demodulate:
        x = x * dcoefs.to(x.dtype).reshape(n, out_ch, 1, 1)
    return x


def half_precision_available(device: torch.device) -> bool:
    """Whether ``fp16=True`` takes effect on ``device`` (CUDA only; CPU half convolutions are slow)."""
    return device.type == "cuda"


def normalize_2nd_moment(x: torch.Tensor, *, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit root-mean-square (the mapping network's input normalisation)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------
# The architecture's settings


@dataclass(frozen=True)
class GeneratorConfig:
    """The constructor arguments of :class:`Generator`, written once.

    The defaults are the sizes of the FFHQ 1024 px generator (its checkpoints also set
    ``num_fp16_res=4, conv_clamp=256``). :func:`aging.stylegan.checkpoints.save_generator` stores
    ``dataclasses.asdict(config)`` beside the weights, and a loader builds it back with
    ``GeneratorConfig(**saved)``; values are normalised on construction (a float clamp, a tuple of
    float taps), so a config read back from JSON equals the one saved.

    Raises ``ValueError`` for a resolution that is not a power of two >= 4, no mapping layers, or
    channel settings that leave a resolution without channels.
    """

    z_dim: int = 512  # size of the input latent z
    w_dim: int = 512  # size of the intermediate latent w (one of the num_ws rows of W+)
    img_resolution: int = 1024  # output size in px: a power of two >= 4
    img_channels: int = 3  # colour channels of the output
    mapping_layers: int = 8  # depth of the mapping network
    mapping_features: int | None = None  # width of its hidden layers (None: w_dim)
    mapping_lr_multiplier: float = 0.01  # its learning-rate multiplier (equalised learning rate)
    w_avg_beta: float = 0.995  # decay of the tracked mean of w (the centre of truncation)
    channel_base: int = 32768  # channels at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    num_fp16_res: int = 0  # highest resolutions run in float16 when fp16 is asked for (CUDA only)
    conv_clamp: float | None = None  # clamp of every convolution's output (FFHQ: 256)
    use_noise: bool = True  # per-pixel noise inputs
    resample_filter: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)  # taps of the 2x up-sampling filter

    def __post_init__(self):
        if self.conv_clamp is not None:
            object.__setattr__(self, "conv_clamp", float(self.conv_clamp))
        object.__setattr__(self, "resample_filter", tuple(float(t) for t in self.resample_filter))
        res = self.img_resolution
        log2 = int(round(math.log2(res))) if res > 0 else 0
        if res < 4 or 2 ** log2 != res:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {res}")
        if self.mapping_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {self.mapping_layers}")
        if min(self.channels(r) for r in self.block_resolutions) < 1:
            raise ValueError(f"channel_base={self.channel_base} gives no channels at {res} px")

    @property
    def block_resolutions(self) -> list[int]:
        """Resolutions of the synthesis blocks: 4, 8, ..., ``img_resolution``."""
        return [2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        """Feature channels of the synthesis block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)


# ---------------------------------------------------------------------------------------------
# Modules


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: weights stored at unit scale, scaled at run time.

    Parameters
    ----------
    in_features, out_features : int
    activation : {"linear", "lrelu"}
    lr_multiplier : float
        Learning-rate multiplier (the mapping network uses 0.01): the stored weights are
        ``1 / lr_multiplier`` times larger and scaled back in ``forward``.
    bias_init : float
        Initial bias (1 for the style affines, so that styles start around 1).
    """

    def __init__(self, in_features: int, out_features: int, *, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shape(x, [None, self.in_features], "fully connected input")  # [N, in]
        w = self.weight.to(x.dtype) * self.weight_gain  # [out, in]
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())  # [N, out]
        return bias_act(x.matmul(w.t()), b, act=self.activation, gain=LRELU_GAIN)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class MappingNetwork(nn.Module):
    """``z [N, z_dim] -> ws [N, num_ws, w_dim]``, with the tracked mean ``w_avg`` and truncation.

    Parameters
    ----------
    config : GeneratorConfig
        Reads ``z_dim``, ``w_dim`` and the ``mapping_*`` and ``w_avg_beta`` settings.
    num_ws : int
        Number of copies of ``w`` (one per synthesis layer input).

    ``w_avg`` is updated only when asked (``update_emas=True``).
    """

    def __init__(self, config: GeneratorConfig, *, num_ws: int):
        super().__init__()
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.num_ws = num_ws
        self.num_layers = config.mapping_layers
        self.w_avg_beta = config.w_avg_beta
        hidden = config.w_dim if config.mapping_features is None else config.mapping_features
        features = [config.z_dim] + [hidden] * (self.num_layers - 1) + [config.w_dim]
        for i in range(self.num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation="lrelu",
                                                        lr_multiplier=config.mapping_lr_multiplier))
        self.register_buffer("w_avg", torch.zeros([config.w_dim]))  # [w_dim]

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                *, update_emas: bool = False) -> torch.Tensor:
        check_shape(z, [None, self.z_dim], "z")  # [N, z_dim]
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)  # [N, w_dim]
        if update_emas:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)  # [N, num_ws, w_dim]
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws = ws.clone()
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], truncation_psi)  # w_avg + psi * (w - w_avg)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution (optionally up-sampling 2x), noise, bias, leaky ReLU.

    Parameters
    ----------
    in_channels, out_channels : int
    resolution : int
        Output resolution (the size of the stored noise).
    config : GeneratorConfig
        Reads ``w_dim``, ``use_noise``, ``conv_clamp`` (output clamp) and ``resample_filter``.
    up : int
        1, or 2 to double the resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, *, resolution: int, config: GeneratorConfig,
                 up: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = config.use_noise
        self.conv_clamp = config.conv_clamp
        self.padding = KERNEL_SIZE // 2
        self.affine = FullyConnectedLayer(config.w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, KERNEL_SIZE, KERNEL_SIZE]))
        if self.use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", make_resample_filter(config.resample_filter))  # [4, 4]
        if self.use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))  # [R, R]

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, noise_mode: str = "const",
                fused: bool = True) -> torch.Tensor:
        in_res = self.resolution // self.up
        check_shape(x, [None, self.in_channels, in_res, in_res], "synthesis layer input")  # [N, I, r, r]
        styles = self.affine(w)  # [N, I]
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
            noise = noise * self.noise_strength  # [N, 1, R, R]
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength  # [R, R]
        x = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, fused=fused)  # [N, O, R, R]
        if noise is not None:
            x = x + noise.to(x.dtype)
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=LRELU_GAIN,
                        clamp=self.conv_clamp)  # [N, O, R, R]


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation, no activation)."""

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)  # 1 / sqrt(fan-in) of the 1x1 kernel

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # [N, I]
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)  # [N, 3, R, R]
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const input | 2x up-sampling conv0), conv1, ToRGB added to the skip image.

    Parameters
    ----------
    in_channels : int
        0 for the first block (4x4), which starts from a learned constant.
    out_channels, resolution : int
    config : GeneratorConfig
        Reads ``w_dim``, ``img_channels`` and the layers' settings.

    Attributes
    ----------
    use_fp16 : bool
        Run this block in float16 when half precision is requested (CUDA only); set by
        :meth:`SynthesisNetwork.set_num_fp16_res`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, resolution: int, config: GeneratorConfig):
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.use_fp16 = False
        layer_kw = dict(resolution=resolution, config=config)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))  # [C, 4, 4]
        self.register_buffer("resample_filter", make_resample_filter(config.resample_filter))
        self.num_conv = 0
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **layer_kw)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **layer_kw)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, config.img_channels, w_dim=config.w_dim, conv_clamp=config.conv_clamp)
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, *,
                noise_mode: str = "const", fp16: bool = False,
                fused_modconv: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_shape(ws, [None, self.num_conv + self.num_torgb, None], "block ws")  # [N, k, w_dim]
        w_iter = iter(ws.unbind(dim=1))
        in_half = fp16 and self.use_fp16 and half_precision_available(ws.device)
        dtype = torch.float16 if in_half else torch.float32
        if fused_modconv is None:  # one grouped conv is best for batch 1 and in float32
            fused_modconv = (not self.training) and (dtype == torch.float32 or ws.shape[0] == 1)

        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)  # [N, C, 4, 4]
        else:
            in_res = self.resolution // 2
            check_shape(x, [ws.shape[0], self.in_channels, in_res, in_res], "block input")
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode=noise_mode, fused=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused=fused_modconv)  # [N, C, R, R]

        if img is not None:
            img = upsample2d(img, self.resample_filter)  # [N, 3, R, R]
        y = self.torgb(x, next(w_iter), fused=fused_modconv).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """``ws [N, num_ws, w_dim] -> images [N, img_channels, R, R]``.

    Parameters
    ----------
    config : GeneratorConfig
        One :class:`SynthesisBlock` per resolution of ``config.block_resolutions``, with
        ``config.channels(res)`` channels; ``config.num_fp16_res`` highest resolutions run in
        float16 when half precision is requested.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.block_resolutions = config.block_resolutions
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = config.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(in_channels, config.channels(res), resolution=res, config=config)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last ToRGB
        self.set_num_fp16_res(config.num_fp16_res)

    def set_num_fp16_res(self, num_fp16_res: int) -> None:
        """Choose how many of the highest resolutions run in float16 when ``fp16=True``.

        The first 8x8 is the lowest that ever does (as in NVIDIA's networks). A run-time choice:
        the generator's ``config`` (what is saved) keeps the value it was built with.
        """
        self.num_fp16_res = int(num_fp16_res)
        log2 = int(math.log2(self.img_resolution))
        first = max(2 ** (log2 + 1 - self.num_fp16_res), 8)
        for res in self.block_resolutions:
            getattr(self, f"b{res}").use_fp16 = self.num_fp16_res > 0 and res >= first

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", *, fp16: bool = False,
                fused_modconv: bool | None = None) -> torch.Tensor:
        """Decode W+ latents.

        Parameters
        ----------
        ws : tensor [N, num_ws, w_dim]
        noise_mode : {"const", "random", "none"}
            The stored noise buffers (deterministic), fresh Gaussian noise, or no noise.
        fp16 : bool
            On CUDA, run the ``num_fp16_res`` highest resolutions in float16 (ignored on CPU).
        fused_modconv : bool, optional
            Force the grouped (True) or the batched (False) modulated convolution; default:
            grouped for float32 in eval mode and for batch 1.

        Returns
        -------
        tensor [N, img_channels, R, R], float32
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        check_shape(ws, [None, self.num_ws, self.w_dim], "ws")  # [N, num_ws, w_dim]
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)  # shares the ToRGB w
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fp16=fp16, fused_modconv=fused_modconv)
            w_idx += block.num_conv
        return img  # [N, img_channels, R, R]


def config_or_fields(config_class, config, fields: dict):
    """A generator's config: ``config`` as given, or ``config_class(**fields)``; not both."""
    if config is None:
        return config_class(**fields)
    if fields:
        raise TypeError(f"a generator takes a {config_class.__name__} or its fields as keywords, not both")
    return config


class Generator(nn.Module):
    """StyleGAN2 generator: :class:`MappingNetwork` then :class:`SynthesisNetwork`.

    Parameters
    ----------
    config : GeneratorConfig, optional
        The architecture. Its fields may be given as keywords instead:
        ``Generator(img_resolution=256)`` is ``Generator(GeneratorConfig(img_resolution=256))``.

    Attributes
    ----------
    config : GeneratorConfig
    z_dim, w_dim, img_resolution, img_channels : int
        From the config, under the names NVIDIA's code exposes.
    num_ws : int
        Number of W+ vectors the synthesis network takes (18 at 1024 px).
    """

    def __init__(self, config: GeneratorConfig | None = None, /, **fields):
        super().__init__()
        self.config = config = config_or_fields(GeneratorConfig, config, fields)
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        # Same registration order as NVIDIA's: synthesis first (it decides num_ws), then mapping.
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(config, num_ws=self.num_ws)

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean of ``w`` (``[w_dim]``), the centre of truncation."""
        return self.mapping.w_avg

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, noise_mode: str = "const", *,
                truncation_cutoff: int | None = None, fp16: bool = False) -> torch.Tensor:
        """``z [N, z_dim] -> images [N, img_channels, R, R]``."""
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode, fp16=fp16)
