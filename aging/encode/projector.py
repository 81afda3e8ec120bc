"""Batched projection of photos into a StyleGAN2 latent space (GAN inversion by optimisation).

:func:`project` optimises one latent per target image, a whole batch at once (independent
losses, one Adam optimiser whose per-element updates keep the photos independent), and returns
the final latents and per-photo losses. :func:`project_sequence` runs it over an age-ordered
photo sequence in batches: with ``init="previous"`` the sequence is cut into ``batch`` chains
optimised side by side, each photo warm-started from its predecessor's latent, which is what
makes a time-lapse cheap and its latents temporally consistent; on CUDA out-of-memory it halves
the batch and goes on.

Latent spaces (``space``):

``wplus``
    One ``w`` per synthesis layer, ``[N, num_ws, w_dim]`` (Abdal et al., Image2StyleGAN).
``w``
    One ``w`` per photo broadcast to every layer, ``[N, w_dim]``.
``z``
    The mapping network's input ``[N, z_dim]``, with the stochastic clipping of Lipton &
    Tripathi ("Precise recovery of latent vectors from generative adversarial networks", 2017):
    after every update, components outside ``[-clip, clip]`` are re-drawn from the prior (a
    standard normal) restricted to that interval.

Learning rates of ``w`` / ``wplus`` are in units of the per-component standard deviation of
``w`` (measured on the mapping network), so one default fits generators of any scale; the
``z`` learning rate is in units of ``z`` (unit variance). The rate follows a linear warm-up and
a cosine decay to zero (:func:`lr_factor`).

Everything here is a pure function of its arguments (no files, no global state); seeds come in
as ``torch.Generator`` objects.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from aging.encode.losses import ImageLoss, PreparedTargets, psnr, resize

SPACES = ("wplus", "w", "z")
INITS = ("mean", "previous")
HEADS = ("best", "mean", "root")

DEFAULT_STEPS = 1000
DEFAULT_STEPS_AFTER_FIRST = 100
DEFAULT_LR = 0.2
DEFAULT_LR_AFTER_FIRST = 0.05  # a warm start is already close: a full-size first Adam step would undo it
DEFAULT_CLIP = 3.0
DEFAULT_MIN_CHAIN = 8  # a chain's first photo costs a full projection (two with heads="best")


@dataclass
class Projection:
    """Result of :func:`project` for a batch of ``N`` photos (all tensors detached)."""

    latents: torch.Tensor  # [N, *space_shape] the optimised variable (z, w or W+)
    ws: torch.Tensor  # [N, num_ws, w_dim] float32, what the synthesis network decodes
    losses: dict[str, torch.Tensor]  # name -> [N] final values (loss terms, "total", regularisers)
    images: torch.Tensor  # [N, 3, r, r] final reconstructions at the working resolution, [-1, 1]
    history: torch.Tensor  # [steps, N] per-photo objective before each update
    steps: int
    seconds: float
    space: str = "wplus"
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.ws.shape[0]


# ---------------------------------------------------------------------------------------------
# Helpers


def space_shape(G, space: str) -> tuple[int, ...]:
    """Shape of one latent in ``space``."""
    if space == "wplus":
        return (G.num_ws, G.w_dim)
    if space == "w":
        return (G.w_dim,)
    if space == "z":
        return (G.z_dim,)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


@torch.no_grad()
def w_stats(G, *, samples: int = 8192, seed: int = 0, batch: int = 2048) -> tuple[torch.Tensor, float]:
    """Mean ``w`` ``[w_dim]`` and the per-component standard deviation of ``w`` over random ``z``.

    Deterministic for a given ``seed`` (the ``z`` are drawn on the CPU).
    """
    gen = torch.Generator().manual_seed(seed)
    device = G.w_avg.device
    total = torch.zeros(G.w_dim, dtype=torch.float64, device=device)
    sq = torch.zeros(G.w_dim, dtype=torch.float64, device=device)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        z = torch.randn([n, G.z_dim], generator=gen).to(device)
        w = G.mapping(z, truncation_psi=1.0)[:, 0].double()  # [n, w_dim]
        total += w.sum(0)
        sq += w.square().sum(0)
        done += n
    mean = total / samples
    var = (sq / samples - mean.square()).clamp_min(0).mean()
    return mean.float(), float(var.sqrt())


def truncated_normal(shape, k: float, *, generator: torch.Generator | None = None,
                     device="cpu") -> torch.Tensor:
    """Standard-normal samples restricted to ``[-k, k]`` (inverse CDF; exact, no rejection loop)."""
    lo = torch.special.ndtr(torch.tensor(-float(k), dtype=torch.float64))
    u = torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device if generator else "cpu")
    x = torch.special.ndtri(lo + (1 - 2 * lo) * u)
    return x.clamp(-k, k).to(device=device, dtype=torch.float32)


def stochastic_clip_(z: torch.Tensor, k: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Lipton & Tripathi's stochastic clipping, in place: re-draw components of ``z`` outside ``[-k, k]``.

    Returns the boolean mask of re-drawn components.
    """
    mask = z.abs() > k
    fresh = truncated_normal(z.shape, k, generator=generator, device=z.device)
    z.copy_(torch.where(mask, fresh, z))
    return mask


def mean_latents(G, n: int, space: str, *, clip: float = DEFAULT_CLIP,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The ``mean`` initialisation: ``G.w_avg`` for ``w`` / ``wplus``.

    ``z`` has no latent that maps to ``w_avg``; it starts from a random ``z`` of the clipped
    prior instead (as in Lipton & Tripathi).
    """
    device = G.w_avg.device
    if space == "wplus":
        return G.w_avg.detach().float().reshape(1, 1, -1).repeat(n, G.num_ws, 1)
    if space == "w":
        return G.w_avg.detach().float().reshape(1, -1).repeat(n, 1)
    if space == "z":
        return truncated_normal((n, G.z_dim), clip, generator=generator, device=device)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def to_ws(G, latents: torch.Tensor, space: str) -> torch.Tensor:
    """Latents of ``space`` -> W+ ``[N, num_ws, w_dim]``."""
    if space == "wplus":
        return latents
    if space == "w":
        return latents.unsqueeze(1).expand(-1, G.num_ws, -1)
    if space == "z":
        return G.mapping(latents, truncation_psi=1.0)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def from_ws(ws: torch.Tensor, space: str) -> torch.Tensor:
    """W+ ``[N, num_ws, w_dim]`` -> latents of ``space`` (``w``: the mean over layers; no ``z``)."""
    if space == "wplus":
        return ws
    if space == "w":
        return ws.mean(1)
    raise ValueError("a W+ latent cannot be turned back into z")


def lr_factor(step: int, steps: int, *, warmup: float, decay: float) -> float:
    """Learning-rate multiplier at ``step`` of ``steps``: linear warm-up over the first ``warmup``
    fraction of the steps, then constant, then a cosine decay to zero over the last ``decay``
    fraction."""
    t = (step + 1) / steps
    f = 1.0
    if warmup > 0:
        f = min(f, t / warmup)
    if decay > 0 and t > 1 - decay:
        f *= 0.5 * (1 + math.cos(math.pi * (t - (1 - decay)) / decay))
    return f


def _check_targets(G, targets) -> None:
    n = len(targets)
    if n < 1:
        raise ValueError("no targets")
    imgs = targets.images if isinstance(targets, PreparedTargets) else targets
    if imgs.ndim != 4 or imgs.shape[1] != G.img_channels or imgs.shape[2] != imgs.shape[3]:
        raise ValueError(f"targets: expected shape [N, {G.img_channels}, H, H], got {list(imgs.shape)}")


def _regularisers(ws: torch.Tensor, *, mean_reg: float, smooth: float, anchor: torch.Tensor | None,
                  w_std: float) -> dict[str, torch.Tensor]:
    """Per-photo regulariser values ``[N]`` (already weighted), in units of ``w_std ** 2``."""
    out = {}
    scale = 1.0 / (w_std * w_std)
    if mean_reg > 0:  # each layer's w toward the photo's mean w
        dev = ws - ws.mean(1, keepdim=True)  # [N, num_ws, w_dim]
        out["mean-reg"] = mean_reg * scale * dev.square().flatten(1).mean(1)
    if smooth > 0 and anchor is not None:  # squared step from each photo's predecessor
        out["smooth"] = smooth * scale * (ws - anchor).square().flatten(1).mean(1)
    return out


# ---------------------------------------------------------------------------------------------
# Projection of one batch


def project(G, targets: torch.Tensor | PreparedTargets, *, loss: ImageLoss, steps: int = DEFAULT_STEPS,
            lr: float = DEFAULT_LR, space: str = "wplus", init: torch.Tensor | None = None,
            warmup: float = 0.05, decay: float = 0.5, betas: tuple[float, float] = (0.9, 0.95),
            mean_reg: float = 0.0, smooth: float = 0.0, anchor: torch.Tensor | None = None,
            clip: float = DEFAULT_CLIP, w_std: float | None = None, fp16: bool = False,
            noise_mode: str = "const", generator: torch.Generator | None = None,
            callback: Callable[[int, torch.Tensor], None] | None = None) -> Projection:
    """Find latents whose images reconstruct ``targets``.

    Parameters
    ----------
    G : Generator
        In eval mode with ``requires_grad`` off (as :func:`aging.stylegan.load_generator` gives).
    targets : tensor [N, 3, H, H] in [-1, 1], or PreparedTargets
        The photos (any square size >= the working resolution of ``loss``).
    loss : ImageLoss
        Reconstruction terms and working resolution.
    steps : int
        Adam updates.
    lr : float
        Peak learning rate (``w``/``wplus``: in units of the per-component std of ``w``).
    space : {"wplus", "w", "z"}
    init : tensor [N, *space_shape] or [*space_shape], optional
        Starting latents in ``space`` (default: :func:`mean_latents`).
    warmup, decay : float
        Fractions of ``steps`` for the learning-rate warm-up and cosine decay (:func:`lr_factor`).
    mean_reg : float
        Weight of the pull of every W+ layer toward the photo's mean ``w``.
    smooth : float
        Weight of the temporal smoothness term: the squared W+ step from each photo's ``anchor``.
    anchor : tensor [N, num_ws, w_dim] or [num_ws, w_dim], optional
        W+ latents of the photos just before each photo (constants); no smoothness term without.
    clip : float
        ``z`` space: the bound ``k`` of stochastic clipping.
    w_std : float, optional
        Per-component std of ``w`` (default: measured with :func:`w_stats`).
    fp16 : bool
        On CUDA: half precision in the synthesis network's highest resolutions (and in VGG16 if
        ``loss.amp``), with dynamic loss scaling. Ignored on CPU.
    generator : torch.Generator, optional
        Randomness of the ``z`` space (initialisation and re-draws).
    callback : callable(step, per_photo_objective [N]), optional
        Called after every update with a detached tensor (reading it synchronises CUDA).

    Returns
    -------
    Projection
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if space == "z" and not clip > 0:
        raise ValueError(f"clip must be positive, got {clip}")
    _check_targets(G, targets)
    t0 = time.perf_counter()
    device = G.w_avg.device
    n = len(targets)
    prepared = targets if isinstance(targets, PreparedTargets) else loss.prepare(targets.to(device))
    if w_std is None:
        w_std = w_stats(G)[1]
    shape = space_shape(G, space)
    if init is None:
        init = mean_latents(G, n, space, clip=clip, generator=generator)
    init = init.detach().to(device=device, dtype=torch.float32)
    if tuple(init.shape) == shape:
        init = init.unsqueeze(0).repeat(n, *[1] * len(shape))
    if tuple(init.shape) != (n, *shape):
        raise ValueError(f"init: expected shape {[n, *shape]} for space {space!r}, got {list(init.shape)}")
    if anchor is not None:
        anchor = anchor.detach().to(device=device, dtype=torch.float32)
        if anchor.ndim == 2:
            anchor = anchor.unsqueeze(0)
        if tuple(anchor.shape[1:]) != (G.num_ws, G.w_dim) or anchor.shape[0] not in (1, n):
            raise ValueError(f"anchor: expected shape [{n}, {G.num_ws}, {G.w_dim}], got {list(anchor.shape)}")
    if space == "z":
        init = init.clone()
        stochastic_clip_(init, clip, generator=generator)

    latent = init.clone().requires_grad_(True)  # [N, *shape]
    base_lr = lr if space == "z" else lr * w_std
    opt = torch.optim.Adam([latent], lr=base_lr, betas=betas)
    use_amp = fp16 and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp) if use_amp else None
    history = torch.zeros([steps, n], device=device)

    def objective(lat):
        ws = to_ws(G, lat, space)  # [N, num_ws, w_dim]
        images = G.synthesis(ws, noise_mode=noise_mode, fp16=use_amp)  # [N, 3, R, R]
        terms = loss(images, prepared)
        terms.update(_regularisers(ws, mean_reg=mean_reg, smooth=smooth, anchor=anchor, w_std=w_std))
        per_photo = sum(v for k, v in terms.items() if k not in loss.terms)  # total + regularisers
        return per_photo, terms, ws, images

    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = base_lr * lr_factor(step, steps, warmup=warmup, decay=decay)
        per_photo, _, _, _ = objective(latent)
        history[step] = per_photo.detach()
        opt.zero_grad(set_to_none=True)
        # The photos' losses are summed: each latent gets the gradient of its own loss alone.
        if scaler is not None:
            scaler.scale(per_photo.sum()).backward()
            scaler.step(opt)
            scaler.update()
        else:
            per_photo.sum().backward()
            opt.step()
        if space == "z":
            with torch.no_grad():
                stochastic_clip_(latent, clip, generator=generator)
        if callback is not None:
            callback(step, per_photo.detach())

    with torch.no_grad():
        final = latent.detach()
        per_photo, terms, ws, images = objective(final)
        losses = {k: v.float() for k, v in terms.items()}
        if len(losses) > len(loss.names):
            losses["objective"] = per_photo.float()
        images = resize(images.float(), loss.resolution)  # [N, 3, r, r]
        info = {"psnr": psnr(images, prepared.images).cpu()}
    return Projection(latents=final.clone(), ws=ws.detach().float().contiguous(), losses=losses, images=images,
                      history=history, steps=steps, seconds=time.perf_counter() - t0, space=space, info=info)


# ---------------------------------------------------------------------------------------------
# Sequences


def _lower_loss(a: Projection, b: Projection) -> Projection:
    """Per photo, the projection of ``a`` or ``b`` (same photos, objective and steps) with the lower
    final objective (``a`` on ties); ``info["init"]`` becomes a list, one entry per photo."""
    key = "objective" if "objective" in a.losses else "total"
    take_b = b.losses[key] < a.losses[key]  # [N]

    def pick(x, y):
        return torch.where(take_b.view(-1, *[1] * (x.ndim - 1)).to(x.device), y, x)

    losses = {}
    for name in a.losses:
        losses[name] = pick(a.losses[name], b.losses[name])
    info = {**a.info, "psnr": pick(a.info["psnr"], b.info["psnr"]),
            "init": [b.info["init"] if t else a.info["init"] for t in take_b.tolist()]}
    return Projection(latents=pick(a.latents, b.latents), ws=pick(a.ws, b.ws), losses=losses,
                      images=pick(a.images, b.images), history=pick(a.history.T, b.history.T).T, steps=a.steps,
                      seconds=a.seconds + b.seconds, space=a.space, info=info)


def batch_generator(seed: int, key: int, device="cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from ``(seed, key)``: a batch's randomness depends only on the
    run's seed and its first photo (so a resumed run repeats it exactly)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(key) & 0xFFFFFFFF]).generate_state(2)
    value = int(state[0]) << 32 | int(state[1])
    return torch.Generator(device=device).manual_seed(value & 0x7FFF_FFFF_FFFF_FFFF)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (the only failure the batch size is adapted to)."""
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError)
                                                       and "CUDA out of memory" in str(exc))


def plan_chains(n: int, batch: int, max_length: int | None = None, min_length: int = 1) -> list[list[int]]:
    """Split photos ``0..n-1`` (age order) into contiguous chains of (nearly) equal length.

    ``batch`` chains, fewer where that many would be shorter than ``min_length`` photos (a
    chain's first photo costs a full projection, so short chains cost more than they save), more
    where that is what it takes to keep every chain at most ``max_length`` photos long (which
    wins over ``min_length``). ``plan_chains(8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]``,
    ``plan_chains(8, 3, min_length=4) == [[0, 1, 2, 3], [4, 5, 6, 7]]``,
    ``plan_chains(8, 2, max_length=3) == [[0, 1, 2], [3, 4, 5], [6, 7]]``. The chains are
    optimised side by side: round ``t`` is the ``t``-th photo of every chain, in batches of
    ``batch``.
    """
    if n < 0 or batch < 1 or min_length < 1 or (max_length is not None and max_length < 1):
        raise ValueError(f"need n >= 0, batch >= 1, min_length >= 1 and max_length >= 1, got {n}, {batch}, "
                         f"{min_length}, {max_length}")
    if n == 0:
        return []
    count = max(1, min(batch, n // min_length))
    if max_length:
        count = max(count, -(-n // max_length))
    length = -(-n // count)
    return [list(range(i, min(i + length, n))) for i in range(0, n, length)]


def project_sequence(G, targets: Sequence, *, loss: ImageLoss, batch: int = 16, init: str = "previous",
                     heads: str = "best", steps: int = DEFAULT_STEPS,
                     steps_after_first: int | None = DEFAULT_STEPS_AFTER_FIRST, space: str = "wplus",
                     chains: list[list[int]] | None = None, chain_length: int | None = None,
                     min_chain: int = DEFAULT_MIN_CHAIN,
                     starts: list[torch.Tensor | None] | None = None, root: torch.Tensor | None = None,
                     offsets: list[int] | None = None, keys: Sequence[int] | None = None,
                     lr: float = DEFAULT_LR, lr_after_first: float = DEFAULT_LR_AFTER_FIRST, seed: int = 0,
                     smooth: float = 0.0, w_std: float | None = None, on_oom: Callable[[int, int], None] | None = None,
                     **project_kw) -> Iterator[tuple[list[int], Projection]]:
    """Project an age-ordered sequence in batches; yield ``(indices, Projection)`` per batch.

    With ``init="previous"`` the photos form *chains* of consecutive photos (:func:`plan_chains`:
    ``batch`` chains by default) that are optimised side by side: a batch holds the next photo of
    every chain, and each photo starts from the final latent of the photo just before it in its
    chain, with ``steps_after_first`` updates at ``lr_after_first``. So every warm-started photo
    starts from its immediate predecessor (consecutive photos of a time-lapse are nearly the same
    face) while the batch stays full. The chains' first photos (those without an entry in
    ``starts``), the *heads*, come first, from ``steps`` updates:

    ``heads="root"``
        the first head alone from the mean; then the others together from its latent, the
        *root*, with ``steps`` updates at ``lr_after_first`` (init ``head``): every chain descends
        from one solution, so the chains meet with small jumps; but a head far (in age) from the
        first photo may stay in a basin that suits it less than the one found from the mean.
    ``heads="mean"``
        every head from :func:`mean_latents` with ``steps`` updates at ``lr`` (init ``mean``),
        all in one batch: each chain starts as well as an independent encoding of its first
        photo, at the price of a jump where two chains meet (two independent solutions).
    ``heads="best"`` (default)
        as ``root``, but every head after the first is also projected from the mean (same
        objective and steps) and keeps whichever ends with the lower objective: never worse than
        an independent encoding, and a jump as large as ``mean``'s only where the root's basin
        is worse (twice the heads' cost).

    With ``init="mean"`` every photo starts from the mean, in batches of consecutive photos.

    Parameters
    ----------
    targets : sequence
        ``len(targets)`` photos in age order; ``targets[list_of_indices]`` gives a tensor
        ``[k, 3, H, H]`` (a tensor, or a lazy loader reading files on demand).
    batch : int
        Photos optimised together (and the number of chains by default). Halved (down to 1)
        whenever CUDA runs out of memory; the failed batch is retried and the smaller size kept.
    init : {"mean", "previous"}
    heads : {"best", "mean", "root"}
        Where the chains' first photos start (see above).
    steps, steps_after_first : int
        Updates of photos started from the mean, and of warm-started photos (default ``steps``).
    chains : list of lists of int, optional
        The chains (indices into ``targets``, each in age order, disjoint). Default
        :func:`plan_chains` ``(len(targets), batch, chain_length, min_chain)``: ``batch`` chains,
        fewer if they would be shorter than ``min_chain`` photos, more if longer than
        ``chain_length``. Photos outside every chain are not projected (``init="mean"``: the
        photos to project, each on its own).
    chain_length, min_chain : int
        See ``chains``.
    starts : list, optional
        One entry per chain: the latent (in ``space``) of the photo just before the chain, e.g.
        when resuming, or None (the chain's first photo starts from the root, or the mean).
    offsets : list of int, optional
        The round of each chain's first photo (default 0): a resumed run passes each chain's
        position in the chain it continues, so that its batches are those of an uninterrupted run
        (and its results bit-identical).
    root : tensor [*space_shape], optional
        ``heads="root"``: the root latent (when resuming: that of the first chain's first photo);
        default: found by projecting the first chain's first photo from the mean.
    lr, lr_after_first : float
        Peak learning rates of photos started from the mean and of warm-started photos. Adam's
        first updates move every component by about the learning rate, whatever its gradient, so
        a warm start needs a smaller one to keep what it starts from.
    keys : sequence of int, optional
        One integer per photo (ages); a batch's random generator is seeded from ``seed`` and the
        key of its first photo (:func:`batch_generator`). Default: the indices.
    smooth : float
        Temporal smoothness weight: the squared W+ step from the photo's predecessor in its chain
        (see :func:`project`); for the chains' first photos, from the root (``heads="mean"``: none).
    on_oom : callable(old_batch, new_batch), optional
        Told when the batch size is halved.
    **project_kw
        Passed on to :func:`project` (``warmup``, ``decay``, ``mean_reg``, ``clip``, ``fp16``,
        ``callback``, ...).
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if heads not in HEADS:
        raise ValueError(f"heads must be one of {HEADS}, got {heads!r}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if steps_after_first is None:
        steps_after_first = steps
    n = len(targets)
    keys = list(range(n)) if keys is None else [int(k) for k in keys]
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} targets")
    if chains is None:
        chains = plan_chains(n, batch, chain_length, min_chain) if init == "previous" else [list(range(n))]
    if init == "mean":  # every photo on its own, in batches of consecutive photos
        chains, starts, offsets = [[i] for c in chains for i in c], None, None
    chains = [list(c) for c in chains if len(c)]
    if starts is None:
        starts = [None] * len(chains)
    if len(starts) != len(chains):
        raise ValueError(f"{len(starts)} starts for {len(chains)} chains")
    if w_std is None:
        w_std = w_stats(G)[1]
    device = G.w_avg.device
    prev_latent: list[torch.Tensor | None] = [None if s is None else s.detach().float().to(device) for s in starts]
    prev_ws: list[torch.Tensor | None] = [None] * len(chains)
    if smooth > 0:
        with torch.no_grad():
            prev_ws = [None if s is None else to_ws(G, s.unsqueeze(0), space)[0] for s in prev_latent]

    state = {"batch": batch, "root": None if root is None else root.detach().float().to(device)}

    def anchors(part: list[int], kind: str) -> torch.Tensor | None:
        """W+ latents the smoothness term pulls toward: the predecessors', or the root's for a head."""
        if smooth <= 0 or kind == "mean":
            return None
        if kind == "head":
            with torch.no_grad():
                return to_ws(G, state["root"].unsqueeze(0), space).expand(len(part), -1, -1)
        return torch.stack([prev_ws[c] for c in part])

    def attempt(part: list[int], idx: list[int], kind: str, anchor_kind: str | None = None) -> Projection:
        if kind == "head":
            init_ = state["root"].unsqueeze(0).repeat(len(part), *[1] * state["root"].ndim)
        elif kind == "previous":
            init_ = torch.stack([prev_latent[c] for c in part])
        else:
            init_ = None
        proj = project(G, targets[idx], loss=loss, space=space, w_std=w_std, smooth=smooth,
                       steps=steps_after_first if kind == "previous" else steps,
                       lr=lr if kind == "mean" else lr_after_first, init=init_,
                       anchor=anchors(part, anchor_kind or kind),
                       generator=batch_generator(seed, keys[idx[0]]), **project_kw)
        proj.info.update(init=kind)
        return proj

    def run(group: list[int], t: int, kind: str):
        """Project photo ``t`` of the chains in ``group``; ``kind``: mean, head (from the root),
        best (both, the lower loss kept) or previous."""
        k = 0
        while k < len(group):
            part = group[k:k + state["batch"]]
            idx = [chains[c][t - offsets[c]] for c in part]
            try:
                if kind == "best":
                    # the same objective (smoothness: toward the root) from two starts
                    proj = _lower_loss(attempt(part, idx, "head"), attempt(part, idx, "mean", "head"))
                else:
                    proj = attempt(part, idx, kind)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
                if not is_out_of_memory(exc) or state["batch"] == 1:
                    raise
                del exc
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                new = max(1, state["batch"] // 2)
                if on_oom is not None:
                    on_oom(state["batch"], new)
                state["batch"] = new
                continue
            proj.info.update(batch=len(idx))
            yield idx, proj
            for m, c in enumerate(part):
                prev_latent[c] = proj.latents[m]
                prev_ws[c] = proj.ws[m]
            k += len(part)

    offsets = [0] * len(chains) if offsets is None else [int(o) for o in offsets]
    if len(offsets) != len(chains) or min(offsets, default=0) < 0:
        raise ValueError(f"need one non-negative offset per chain, got {offsets}")
    for t in range(max((o + len(c) for o, c in zip(offsets, chains)), default=0)):
        members = [c for c in range(len(chains)) if offsets[c] <= t < offsets[c] + len(chains[c])]
        cold = [c for c in members if prev_latent[c] is None]
        warm = [c for c in members if prev_latent[c] is not None]
        if cold and init == "previous" and heads != "mean":
            if state["root"] is None and len(cold) > 1:  # the first head alone, the root of the others
                yield from run(cold[:1], t, "mean")
                state["root"] = prev_latent[cold[0]]
                cold = cold[1:]
            yield from run(cold, t, "mean" if state["root"] is None else "head" if heads == "root" else "best")
        else:
            yield from run(cold, t, "mean")
        yield from run(warm, t, "previous")
