"""Batched projection of photos into a StyleGAN2 latent space (GAN inversion by optimisation).

:func:`project` optimises one latent per target image, a whole batch at once (independent
losses, one Adam optimiser whose per-element updates keep the photos independent), and returns
the final latents and per-photo losses. :func:`project_sequence` runs it over an age-ordered
photo sequence in batches: with ``init="previous"`` the sequence is cut into ``batch`` chains
optimised side by side, each photo warm-started from its predecessor's latent, which is what
makes a time-lapse cheap and its latents temporally consistent; on CUDA out-of-memory it halves
the batch and goes on. Their hyper-parameters are :class:`~aging.encode.options.ProjectOptions`
and :class:`~aging.encode.options.SequenceOptions`; which photos form chains, and where they
start, is a :class:`~aging.encode.chains.ChainPlan`.

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
a cosine decay to zero (:func:`lr_factor`). With ``patience``, each photo of a batch stops on its
own once its objective has stopped improving (after a short cosine cool-down of its own rate), and
the batch goes on with the photos still moving; Adam is our own (:class:`_Adam`), with a rate per
photo.

Everything here is a pure function of its arguments (no files, no global state); seeds come in
as ``torch.Generator`` objects (a sequence's, from its seed and each batch's first key).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from aging.encode.chains import ChainPlan, KeyPlan, plan_sequence
from aging.encode.losses import ImageLoss, PreparedTargets, psnr, resize
from aging.encode.options import SPACES, ProjectOptions, SequenceOptions



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


def mean_latents(G, n: int, space: str, *, clip: float = ProjectOptions.clip,
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


def project(G, targets: torch.Tensor | PreparedTargets, *, loss: ImageLoss, options: ProjectOptions = ProjectOptions(),
            init: torch.Tensor | None = None, anchor: torch.Tensor | None = None, w_std: float | None = None,
            generator: torch.Generator | None = None,
            callback: Callable[[int, torch.Tensor], None] | None = None) -> Projection:
    """Find latents whose images reconstruct ``targets``.

    Long: besides the generator, the photos, the loss and the options, the per-batch inputs a
    sequence supplies (start latents, smoothness anchors, the scale of ``w``, the random generator,
    a step hook): tensors and callables, not options to record.

    Parameters
    ----------
    G : Generator
        In eval mode with ``requires_grad`` off (as :func:`aging.stylegan.load_generator` gives).
    targets : tensor [N, 3, H, H] in [-1, 1], or PreparedTargets
        The photos (any square size >= the working resolution of ``loss``).
    loss : ImageLoss
        Reconstruction terms and working resolution.
    options : ProjectOptions
        Steps, learning rate and schedule, space, regularisers, precision (see the class).
    init : tensor [N, *space_shape] or [*space_shape], optional
        Starting latents in ``options.space`` (default: :func:`mean_latents`).
    anchor : tensor [N, num_ws, w_dim] or [num_ws, w_dim], optional
        W+ latents of the photos just before each photo (constants), toward which
        ``options.smooth`` pulls; no smoothness term without.
    w_std : float, optional
        Per-component std of ``w`` (default: measured with :func:`w_stats`).
    generator : torch.Generator, optional
        Randomness of the ``z`` space (initialisation and re-draws).
    callback : callable(step, per_photo_objective [N]), optional
        Called after every update with a detached tensor (reading it synchronises CUDA).

    Returns
    -------
    Projection
    """
    _check_targets(G, targets)
    t0 = time.perf_counter()
    device = G.w_avg.device
    n = len(targets)
    prepared = targets if isinstance(targets, PreparedTargets) else loss.prepare(targets.to(device))
    w_std = w_stats(G)[1] if w_std is None else w_std
    latent = _start_latents(G, n, options, init, generator).requires_grad_(True)  # [N, *shape]
    objective = _Objective(G, loss, prepared, options, _check_anchor(G, n, anchor), w_std)
    if options.optimizer == "lbfgs":
        history, counts, best = _lbfgs(latent, objective, options, w_std, callback)
    else:
        history, counts, best = _optimise(latent, objective, options, w_std, generator, callback)
    with torch.no_grad():
        final = latent.detach()
        per_photo, terms, ws, images = objective(final)
        if options.keep_best and bool((best.values < per_photo).any()):  # an earlier latent was better
            final = torch.where((best.values < per_photo).view(-1, *[1] * (final.ndim - 1)), best.latents, final)
            per_photo, terms, ws, images = objective(final)
        losses = {k: v.float() for k, v in terms.items()}
        if len(losses) > len(loss.names):
            losses["objective"] = per_photo.float()
        images = resize(images.float(), loss.resolution)  # [N, 3, r, r]
        info = {"psnr": psnr(images, prepared.images).cpu(), "photo_steps": counts.cpu()}
    return Projection(latents=final.clone(), ws=ws.detach().float().contiguous(), losses=losses, images=images,
                      history=history, steps=options.steps, seconds=time.perf_counter() - t0, space=options.space,
                      info=info)


def _start_latents(G, n: int, options: ProjectOptions, init: torch.Tensor | None,
                   generator: torch.Generator | None) -> torch.Tensor:
    """``init`` (or :func:`mean_latents`) as ``[N, *space_shape]`` float32 on G's device, clipped in ``z``."""
    space = options.space
    shape = space_shape(G, space)
    if init is None:
        init = mean_latents(G, n, space, clip=options.clip, generator=generator)
    init = init.detach().to(device=G.w_avg.device, dtype=torch.float32)
    if tuple(init.shape) == shape:
        init = init.unsqueeze(0).repeat(n, *[1] * len(shape))
    if tuple(init.shape) != (n, *shape):
        raise ValueError(f"init: expected shape {[n, *shape]} for space {space!r}, got {list(init.shape)}")
    init = init.clone()
    if space == "z":
        stochastic_clip_(init, options.clip, generator=generator)
    return init


def _check_anchor(G, n: int, anchor: torch.Tensor | None) -> torch.Tensor | None:
    """``anchor`` as ``[N or 1, num_ws, w_dim]`` float32 on G's device (None stays None)."""
    if anchor is None:
        return None
    anchor = anchor.detach().to(device=G.w_avg.device, dtype=torch.float32)
    if anchor.ndim == 2:
        anchor = anchor.unsqueeze(0)
    if tuple(anchor.shape[1:]) != (G.num_ws, G.w_dim) or anchor.shape[0] not in (1, n):
        raise ValueError(f"anchor: expected shape [{n}, {G.num_ws}, {G.w_dim}], got {list(anchor.shape)}")
    return anchor


class _Objective:
    """The per-photo objective of one batch: the loss terms plus the regularisers.

    Called with latents ``[N, *space_shape]``; returns ``(per_photo [N], terms, ws, images)``."""

    def __init__(self, G, loss: ImageLoss, prepared: PreparedTargets, options: ProjectOptions,
                 anchor: torch.Tensor | None, w_std: float):
        self.G, self.loss, self.prepared, self.options = G, loss, prepared, options
        self.anchor, self.w_std = anchor, w_std
        self.fp16 = options.fp16 and G.w_avg.device.type == "cuda"

    def __call__(self, latents: torch.Tensor, index: torch.Tensor | None = None):
        """``index``: which photos of the batch ``latents`` are (default: all, in order)."""
        o = self.options
        prepared, anchor = self._photos(index)
        ws = to_ws(self.G, latents, o.space)  # [N, num_ws, w_dim]
        images = self.G.synthesis(ws, noise_mode=o.noise_mode, fp16=self.fp16)  # [N, 3, R, R]
        terms = self.loss(images, prepared)
        terms.update(_regularisers(ws, mean_reg=o.mean_reg, smooth=o.smooth, anchor=anchor, w_std=self.w_std))
        per_photo = sum(v for k, v in terms.items() if k not in self.loss.terms)  # total + regularisers
        return per_photo, terms, ws, images

    def _photos(self, index: torch.Tensor | None):
        """The prepared targets and anchors of photos ``index`` (kept while the same photos come)."""
        if index is None:
            return self.prepared, self.anchor
        key = tuple(index.tolist())
        if getattr(self, "_key", None) != key:
            anchor = self.anchor
            if anchor is not None and anchor.shape[0] > 1:
                anchor = anchor.index_select(0, index)
            self._key, self._subset = key, (self.prepared.select(index), anchor)
        return self._subset


class _Best:
    """Each photo's lowest objective seen so far ``values [N]`` and the latent that gave it."""

    def __init__(self, latent: torch.Tensor):
        self.latents = latent.detach().clone()
        self.values = torch.full([latent.shape[0]], math.inf, device=latent.device)

    def update(self, idx: torch.Tensor, x: torch.Tensor, per_photo: torch.Tensor) -> None:
        """Photos ``idx`` at latents ``x`` had objectives ``per_photo``."""
        better = per_photo < self.values[idx]
        if bool(better.any()):
            self.values[idx[better]] = per_photo[better]
            self.latents[idx[better]] = x.detach()[better]


def _optimise(latent: torch.Tensor, objective: _Objective, options: ProjectOptions, w_std: float,
              generator: torch.Generator | None, callback) -> tuple[torch.Tensor, torch.Tensor, _Best]:
    """Adam on ``latent`` (in place), each photo for at most ``options.steps`` updates; returns the
    per-photo objective before each update ``[steps run, N]`` (a photo that stopped keeps its
    last value), the updates of each photo ``[N]`` and each photo's best latent before an update.

    With ``options.patience``, a photo whose objective has not improved by a fraction ``tol`` in
    ``patience`` updates has converged: its learning rate decays to zero over ``cooldown`` more
    updates (cosine), then it stops, and the batch goes on without it (the synthesis runs on the
    photos still moving only). Every photo's updates depend on its own objective alone."""
    o = options
    n = latent.shape[0]
    adam = _Adam(latent, o.lr if o.space == "z" else o.lr * w_std, o.betas, scaled=objective.fp16)
    stop = _Stopping(n, o, latent.device)
    history = torch.zeros([o.steps, n], device=latent.device)
    last = torch.zeros(n, device=latent.device)
    best = _Best(latent)
    step = 0
    while step < o.steps and stop.active.numel():
        idx = stop.active
        every = idx.numel() == n
        x = (latent if every else latent.index_select(0, idx)).detach().requires_grad_(True)
        per_photo = objective(x, None if every else idx)[0]
        best.update(idx, x, per_photo.detach().float())
        adam.step(latent, x, per_photo, idx, stop.factors(step) * lr_factor(step, o.steps, warmup=o.warmup,
                                                                              decay=o.decay))
        if o.space == "z":
            with torch.no_grad():
                z = latent[idx]
                stochastic_clip_(z, o.clip, generator=generator)
                latent[idx] = z
        last[idx] = per_photo.detach().float()
        history[step] = last
        stop.update(step, per_photo.detach().float())
        if callback is not None:
            callback(step, per_photo.detach())
        step += 1
    return history[:step], adam.count, best


def _lbfgs(latent: torch.Tensor, objective: _Objective, options: ProjectOptions, w_std: float,
           callback) -> tuple[torch.Tensor, torch.Tensor, _Best]:
    """L-BFGS (``torch.optim.LBFGS``, strong-Wolfe line search, history 20) on ``latent`` in place,
    photo by photo (each its own optimisation), in float32, in units of ``w_std``; each photo gets
    at most ``options.steps`` objective evaluations (a line search under way may finish with a few
    more; a non-finite objective ends it, at the best latent seen if any). Returns as
    :func:`_optimise`: the objective at every evaluation ``[evals, N]`` (a photo that finished keeps
    its last value), the evaluations of each photo ``[N]``, the best seen."""
    n = latent.shape[0]
    best = _Best(latent)
    counts = torch.zeros(n, dtype=torch.long, device=latent.device)
    values: list[list[float]] = []
    was = objective.fp16
    objective.fp16 = False  # a line search needs exact values
    try:
        for i in range(n):
            index = torch.tensor([i], device=latent.device)
            x = (latent[i:i + 1].detach() / w_std).clone().requires_grad_(True)
            opt = torch.optim.LBFGS([x], lr=1, max_iter=options.steps, max_eval=options.steps, history_size=20,
                                    tolerance_grad=0, tolerance_change=0, line_search_fn="strong_wolfe")
            seen: list[float] = []

            def closure():
                opt.zero_grad()
                per_photo = objective(x * w_std, index)[0]
                best.update(index, (x * w_std).detach(), per_photo.detach().float())
                seen.append(float(per_photo.detach()))
                if callback is not None:
                    callback(len(seen) - 1, per_photo.detach())
                if not math.isfinite(seen[-1]):
                    raise _Diverged
                per_photo.sum().backward()
                return per_photo.sum()

            try:
                opt.step(closure)
                end = x.detach()[0] * w_std
            except _Diverged:  # a line search cannot go on from a non-finite value: end at the best seen, if any
                end = best.latents[i] if math.isfinite(float(best.values[i])) else x.detach()[0] * w_std
            with torch.no_grad():
                latent[i] = end
            counts[i] = len(seen)
            values.append(seen)
    finally:
        objective.fp16 = was
    rows = max(map(len, values))
    history = torch.tensor([v + v[-1:] * (rows - len(v)) for v in values], device=latent.device).T
    return history, counts, best


class _Diverged(Exception):
    """:func:`_lbfgs`: the objective was not finite (the photo's optimisation ends there)."""


class _Stopping:
    """Which photos of a batch still move, and their learning-rate factor (see :func:`_optimise`)."""

    def __init__(self, n: int, options: ProjectOptions, device):
        self.options = options
        self.active = torch.arange(n, device=device)  # indices of the photos still moving
        self.best = torch.full([n], math.inf, device=device)
        self.since = torch.zeros(n, dtype=torch.long, device=device)  # updates since the last improvement
        self.cooling = torch.full([n], -1, dtype=torch.long, device=device)  # update a photo converged at

    def factors(self, step: int) -> torch.Tensor:
        """Learning-rate factors ``[active]`` of the cool-down (1 before a photo converged)."""
        c = self.cooling[self.active]
        if self.options.cooldown == 0 or bool((c < 0).all()):
            return torch.ones(len(c), device=c.device)
        t = ((step - c).clamp_min(0) + 1).float() / (self.options.cooldown + 1)
        return torch.where(c < 0, 1.0, 0.5 * (1 + torch.cos(math.pi * t)))

    def update(self, step: int, per_photo: torch.Tensor) -> None:
        """Note the objectives ``[active]`` before update ``step``; drop the photos that have stopped."""
        o = self.options
        if o.patience <= 0:
            return
        idx = self.active
        better = per_photo < self.best[idx] * (1 - o.tol)
        self.best[idx] = torch.where(better, per_photo, self.best[idx])
        self.since[idx] = torch.where(better, 0, self.since[idx] + 1)
        c = self.cooling[idx]
        c = torch.where((c < 0) & (self.since[idx] >= o.patience), step, c)
        self.cooling[idx] = c
        done = (c >= 0) & (step - c >= o.cooldown)
        if bool(done.any()):
            self.active = idx[~done]


class _Adam:
    """Adam (as ``torch.optim.Adam``, eps 1e-8) with a learning rate per photo, updating only the
    photos given; in half precision with a dynamic loss scale (a photo whose gradient is not
    finite skips the update, and the scale halves, as ``torch.amp.GradScaler`` does)."""

    def __init__(self, latent: torch.Tensor, lr: float, betas: tuple[float, float], *, scaled: bool):
        self.lr, self.betas, self.eps = lr, betas, 1e-8
        self.m = torch.zeros_like(latent)
        self.v = torch.zeros_like(latent)
        self.count = torch.zeros(latent.shape[0], dtype=torch.long, device=latent.device)  # updates per photo
        self.scale, self.good = (2.0 ** 16 if scaled else 1.0), 0
        self.scaled = scaled

    def step(self, latent: torch.Tensor, x: torch.Tensor, per_photo: torch.Tensor, idx: torch.Tensor,
             factor: torch.Tensor) -> None:
        """One update of photos ``idx`` (their latents ``x`` gave ``per_photo``), at ``lr * factor``."""
        (per_photo.sum() * self.scale).backward()  # each latent gets the gradient of its own loss alone
        with torch.no_grad():
            g = x.grad / self.scale
            ok = torch.isfinite(g.flatten(1)).all(1) if self.scaled else None
            if ok is not None and not bool(ok.all()):
                self.scale, self.good = self.scale / 2, 0
                idx, g, factor = idx[ok], g[ok], factor[ok]
            elif self.scaled:
                self.good += 1
                if self.good == 2000:
                    self.scale, self.good = self.scale * 2, 0
            b1, b2 = self.betas
            shape = (-1,) + (1,) * (g.ndim - 1)
            m = self.m[idx].mul_(b1).add_(g, alpha=1 - b1)
            v = self.v[idx].mul_(b2).addcmul_(g, g, value=1 - b2)
            count = self.count[idx] + 1
            c1 = 1 - b1 ** count.double()
            c2 = 1 - b2 ** count.double()
            denom = (v.sqrt() / c2.sqrt().float().view(shape)).add_(self.eps)
            size = (self.lr * factor.double() / c1).float().view(shape)
            latent[idx] = latent[idx] - size * m / denom
            self.m[idx], self.v[idx], self.count[idx] = m, v, count


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
    info = {**a.info, "psnr": pick(a.info["psnr"], b.info["psnr"]), "photo_steps": a.info["photo_steps"]
            + b.info["photo_steps"], "init": [b.info["init"] if t else a.info["init"] for t in take_b.tolist()]}
    rows = max(len(a.history), len(b.history))  # a photo that stopped keeps its last value
    ha, hb = (torch.cat([h, h[-1:].expand(rows - len(h), -1)]) for h in (a.history, b.history))
    return Projection(latents=pick(a.latents, b.latents), ws=pick(a.ws, b.ws), losses=losses,
                      images=pick(a.images, b.images), history=pick(ha.T, hb.T).T, steps=a.steps,
                      seconds=a.seconds + b.seconds, space=a.space, info=info)


def _then(a: Projection, b: Projection) -> Projection:
    """Projection ``b`` started where ``a`` ended (same photos), as one: ``b``'s result, both
    histories one after the other, steps and seconds added."""
    info = {**b.info, "photo_steps": a.info["photo_steps"] + b.info["photo_steps"]}
    return replace(b, history=torch.cat([a.history, b.history]), steps=a.steps + b.steps,
                   seconds=a.seconds + b.seconds, info=info)


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


def project_sequence(G, targets: Sequence, *, loss: ImageLoss, options: SequenceOptions = SequenceOptions(),
                     plan: ChainPlan | None = None, w_std: float | None = None,
                     on_oom: Callable[[int, int], None] | None = None,
                     callback: Callable[[int, torch.Tensor], None] | None = None
                     ) -> Iterator[tuple[list[int], Projection]]:
    """Project an age-ordered sequence in batches; yield ``(indices, Projection)`` per batch.

    With ``init="previous"`` the photos form *chains* of consecutive photos
    (:func:`~aging.encode.chains.plan_chains`: ``batch`` chains by default) that are optimised side
    by side: a batch holds the next photo of every chain, and each photo starts from the final
    latent of the photo just before it in its chain, with ``steps_after_first`` updates at
    ``lr_after_first``. So every warm-started photo starts from its immediate predecessor
    (consecutive photos of a time-lapse are nearly the same face) while the batch stays full. The
    chains' first photos (those without a start), the *heads*, come first, from ``project.steps``
    updates:

    ``heads="root"``
        the first head alone from the mean; then the others together from its latent, the
        *root*, with ``project.steps`` updates at ``lr_after_first`` (init ``head``): every chain
        descends from one solution, so the chains meet with small jumps; but a head far (in age)
        from the first photo may stay in a basin that suits it less than the one found from the mean.
    ``heads="mean"``
        every head from :func:`mean_latents` with ``project.steps`` updates at ``project.lr``
        (init ``mean``), all in one batch: each chain starts as well as an independent encoding of
        its first photo, at the price of a jump where two chains meet (two independent solutions).
    ``heads="best"``
        as ``root``, but every head after the first is also projected from the mean (same
        objective and steps) and keeps whichever ends with the lower objective: never worse than
        an independent encoding, and a jump as large as ``mean``'s only where the root's basin
        is worse (twice the heads' cost).
    ``heads="nearest"``
        the first head from the mean; then, level by level, each head from the nearest head
        already done (:func:`~aging.encode.chains.head_sources`; init ``near``), with
        ``project.steps`` updates at ``lr_after_first``: a head starts a chain's length (not up
        to the whole sequence) from a solution, so it needs fewer steps and the chains meet with
        smaller jumps (``log2(chains)`` batches of heads instead of one or two).

    A warm start goes on from its predecessor by ``extrapolate`` times the chain's last step
    (the time-lapse moves on in the same direction). With ``project.patience`` every photo stops
    on its own once its objective has stopped improving (see :func:`project`); its steps are
    ``info["photo_steps"]``.

    With ``init="mean"`` every photo starts from the mean, in batches of consecutive photos.
    ``project.smooth`` pulls every photo toward its predecessor in its chain (see :func:`project`);
    the chains' first photos toward the root (``heads="mean"``: none).

    Parameters
    ----------
    targets : sequence
        ``len(targets)`` photos in age order; ``targets[list_of_indices]`` gives a tensor
        ``[k, 3, H, H]`` (a tensor, or a lazy loader reading files on demand).
    options : SequenceOptions
        The projection of each photo, the batch size (halved, down to 1, whenever CUDA runs out
        of memory; the failed batch is retried and the smaller size kept), init, heads, chains,
        warm starts and seed (see the class).
    plan : ChainPlan, optional
        The chains and where they start (a resumed run: :func:`~aging.encode.chains.plan_resume`;
        its batches are then those of an uninterrupted run, bit for bit). Default
        :func:`~aging.encode.chains.plan_sequence`. With ``init="mean"`` every photo of the plan's
        chains is projected on its own.
    w_std : float, optional
        Per-component std of ``w`` (default: measured with :func:`w_stats`).
    on_oom : callable(old_batch, new_batch), optional
        Told when the batch size is halved.
    callback : callable(step, per_photo_objective [N]), optional
        Passed on to :func:`project`.
    """
    plan = plan or plan_sequence(len(targets), options)
    w_std = w_stats(G)[1] if w_std is None else w_std
    if isinstance(plan, KeyPlan):
        run = _KeyRun(G, targets, loss, options, plan, w_std, on_oom, callback)
    else:
        run = _SequenceRun(G, targets, loss, options, _complete_plan(plan, len(targets), options), w_std, on_oom,
                           callback)
    yield from run.rounds()


def _complete_plan(plan: ChainPlan, n: int, options: SequenceOptions) -> ChainPlan:
    """``plan`` with every field given and checked (``init="mean"``: one chain per photo, no starts)."""
    chains = [list(c) for c in plan.chains if len(c)]
    starts, offsets, befores = plan.starts, plan.offsets, plan.befores
    if options.init == "mean":  # every photo on its own, in batches of consecutive photos
        chains, starts, offsets, befores = [[i] for c in chains for i in c], None, None, None
    starts = [None] * len(chains) if starts is None else list(starts)
    befores = [None] * len(chains) if befores is None else list(befores)
    offsets = [0] * len(chains) if offsets is None else [int(o) for o in offsets]
    keys = list(range(n)) if plan.keys is None else [int(k) for k in plan.keys]
    if len(keys) != n:
        raise ValueError(f"{len(keys)} keys for {n} targets")
    if len(starts) != len(chains) or len(befores) != len(chains):
        raise ValueError(f"{len(starts)} starts and {len(befores)} befores for {len(chains)} chains")
    if len(offsets) != len(chains) or min(offsets, default=0) < 0:
        raise ValueError(f"need one non-negative offset per chain, got {offsets}")
    levels = [-1] * len(chains) if plan.levels is None or options.init == "mean" else [int(v) for v in plan.levels]
    sources = [None] * len(chains) if plan.sources is None or options.init == "mean" else list(plan.sources)
    if len(levels) != len(chains) or len(sources) != len(chains):
        raise ValueError(f"{len(levels)} levels and {len(sources)} sources for {len(chains)} chains")
    return ChainPlan(chains, starts, offsets, plan.root, keys, befores, sources, levels, dict(plan.finished or {}))


class _Run:
    """What every :func:`project_sequence` run holds: its inputs, and the batch size (halved on
    CUDA out-of-memory: :func:`_in_batches`)."""

    def __init__(self, G, targets, loss: ImageLoss, options: SequenceOptions, plan, w_std: float, on_oom, callback):
        self.G, self.targets, self.loss, self.options, self.plan = G, targets, loss, options, plan
        self.w_std, self.on_oom, self.callback = w_std, on_oom, callback
        self.batch = options.batch


class _SequenceRun(_Run):
    """One :func:`project_sequence` run of a :class:`~aging.encode.chains.ChainPlan`: the last latent
    (and W+) of every chain, the root. :meth:`rounds` yields ``(indices, Projection)``."""

    def __init__(self, *args):  # as _Run's
        super().__init__(*args)
        G, options, plan = self.G, self.options, self.plan
        device = G.w_avg.device
        space = options.project.space
        self.root = None if plan.root is None else plan.root.detach().float().to(device)
        self.latents = [None if s is None else s.detach().float().to(device) for s in plan.starts]
        self.befores = [None if s is None else s.detach().float().to(device) for s in plan.befores]
        self.finished = {i: s.detach().float().to(device) for i, s in plan.finished.items()}  # heads="nearest"
        self.ws: list[torch.Tensor | None] = [None] * len(plan.chains)  # [num_ws, w_dim] per chain
        if options.project.smooth > 0:
            with torch.no_grad():
                self.ws = [None if s is None else to_ws(G, s.unsqueeze(0), space)[0] for s in self.latents]

    def rounds(self) -> Iterator[tuple[list[int], Projection]]:
        """Round ``t`` projects the ``t``-th photo of every chain: heads first, then warm starts."""
        chains, offsets, o = self.plan.chains, self.plan.offsets, self.options
        for t in range(max((off + len(c) for off, c in zip(offsets, chains)), default=0)):
            members = [c for c in range(len(chains)) if offsets[c] <= t < offsets[c] + len(chains[c])]
            cold = [c for c in members if self.latents[c] is None]
            warm = [c for c in members if self.latents[c] is not None]
            near = [c for c in cold if self.plan.levels[c] >= 0]
            for level in sorted({self.plan.levels[c] for c in near}):  # heads="nearest", level by level
                group = [c for c in near if self.plan.levels[c] == level]
                yield from self._project(group, t, "mean" if self.plan.sources[group[0]] is None else "near")
            cold = [c for c in cold if c not in near]
            if cold and o.init == "previous" and o.heads not in ("mean", "nearest"):
                if self.root is None and len(cold) > 1:  # the first head alone, the root of the others
                    yield from self._project(cold[:1], t, "mean")
                    self.root = self.latents[cold[0]]
                    cold = cold[1:]
                kind = "mean" if self.root is None else "head" if o.heads == "root" else "best"
                yield from self._project(cold, t, kind)
            else:
                yield from self._project(cold, t, "mean")
            yield from self._project(warm, t, "previous")

    def _project(self, group: list[int], t: int, kind: str) -> Iterator[tuple[list[int], Projection]]:
        """Project photo ``t`` of the chains in ``group``, ``self.batch`` chains at a time; ``kind``:
        mean, head (from the root), best (both, the lower loss kept) or previous."""
        o_near = self.options.heads == "nearest" and kind in ("mean", "near")

        def attempt(part):
            idx = [self.plan.chains[c][t - self.plan.offsets[c]] for c in part]
            if kind == "best":  # the same objective (smoothness: toward the root) from two starts
                return _lower_loss(self._attempt(part, idx, "head"), self._attempt(part, idx, "mean", "head"))
            return self._attempt(part, idx, kind)

        for part, proj in _in_batches(self, group, attempt):
            idx = [self.plan.chains[c][t - self.plan.offsets[c]] for c in part]
            yield idx, proj
            for m, c in enumerate(part):
                if o_near:
                    self.finished[idx[m]] = proj.latents[m]
                self.befores[c] = self.latents[c] if kind == "previous" else None
                self.latents[c] = proj.latents[m]
                self.ws[c] = proj.ws[m]

    def _attempt(self, part: list[int], idx: list[int], kind: str, anchor_kind: str | None = None) -> Projection:
        """One projection of photos ``idx`` (of chains ``part``) started as ``kind`` says."""
        o = self.options
        if kind == "head":
            init = self.root.unsqueeze(0).repeat(len(part), *[1] * self.root.ndim)
        elif kind == "near":
            init = torch.stack([self.finished[self.plan.sources[c]] for c in part])
        elif kind == "previous":
            init = torch.stack([self._warm_start(c) for c in part])
        else:
            init = None
        options = o.after_first if kind == "previous" else o.project
        if kind in ("head", "near"):  # from a finished photo: the full steps, at the warm-start learning rate
            steps = o.steps_near if kind == "near" and o.steps_near is not None else o.project.steps
            options = replace(o.project, lr=o.lr_after_first, steps=steps)
        proj = project(self.G, self.targets[idx], loss=self.loss, options=options, init=init,
                       anchor=self._anchor(part, anchor_kind or kind), w_std=self.w_std,
                       generator=batch_generator(o.seed, self.plan.keys[idx[0]]), callback=self.callback)
        proj.info.update(init=kind)
        return proj

    def _warm_start(self, c: int) -> torch.Tensor:
        """Chain ``c``'s next start: its last latent, gone on by ``extrapolate`` times its last step."""
        last, before, e = self.latents[c], self.befores[c], self.options.extrapolate
        return last if e == 0 or before is None else last + e * (last - before)

    def _anchor(self, part: list[int], kind: str) -> torch.Tensor | None:
        """W+ latents the smoothness term pulls toward: the predecessors', or the root's for a head."""
        if self.options.project.smooth <= 0 or kind == "mean":
            return None
        if kind == "near":
            with torch.no_grad():
                starts = torch.stack([self.finished[self.plan.sources[c]] for c in part])
                return to_ws(self.G, starts, self.options.project.space)
        if kind == "head":
            with torch.no_grad():
                return to_ws(self.G, self.root.unsqueeze(0), self.options.project.space).expand(len(part), -1, -1)
        return torch.stack([self.ws[c] for c in part])


def _in_batches(run, items: list, attempt: Callable[[list], Projection]) -> Iterator[tuple[list, Projection]]:
    """``(part, attempt(part))`` for the parts of ``items``, ``run.batch`` at a time; on CUDA
    out-of-memory ``run.batch`` is halved (down to 1; ``run.on_oom`` told) and the part retried."""
    k = 0
    while k < len(items):
        part = items[k:k + run.batch]
        try:
            proj = attempt(part)
        except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled
            if not is_out_of_memory(exc) or run.batch == 1:
                raise
            del exc
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            new = max(1, run.batch // 2)
            if run.on_oom is not None:
                run.on_oom(run.batch, new)
            run.batch = new
            continue
        proj.info.update(batch=len(part))
        yield part, proj
        k += len(part)


class _KeyRun(_Run):
    """One :func:`project_sequence` run of a :class:`~aging.encode.chains.KeyPlan`: the keys one at
    a time, each from the key before it (the first from the mean, its Adam steps then polished with
    L-BFGS), then the photos between keys in
    batches, each from the interpolation of its two keys. :meth:`rounds` yields ``(indices, Projection)``."""

    def __init__(self, *args):  # as _Run's
        super().__init__(*args)
        plan, targets = self.plan, self.targets
        device = self.G.w_avg.device
        self.latents = {k: v.detach().float().to(device) for k, v in plan.latents.items() if v is not None}
        self.times = list(range(len(targets))) if plan.keys_of is None else [int(k) for k in plan.keys_of]
        if len(self.times) != len(targets):
            raise ValueError(f"{len(self.times)} keys for {len(targets)} targets")

    def rounds(self) -> Iterator[tuple[list[int], Projection]]:
        for k in self.plan.todo:
            kind, init, options, before = self._key_start(k)
            proj = self._project([k], init, options, kind, before)
            if kind == "mean" and self.options.polish is not None:  # Adam's result, then L-BFGS from it
                proj = _then(proj, self._project([k], proj.latents, self.options.polish, kind))
            proj.info.update(batch=1)
            self.latents[k] = proj.latents[0]
            yield [k], proj
        for batch in self.plan.fills:
            between = [i for i in batch if self._around(i) is not None]
            lost = [i for i in batch if i not in between]  # a key finished in another space (no z to start from)
            for group, kind in ((between, "fill"), (lost, "mean")):
                attempt = lambda part, kind=kind: self._project(  # noqa: E731
                    part, None if kind == "mean" else torch.stack([self._between(i) for i in part]),
                    self.options.project if kind == "mean" else self.options.fill, kind)
                yield from _in_batches(self, group, attempt)

    def _key_start(self, k: int) -> tuple[str, torch.Tensor | None, ProjectOptions, torch.Tensor | None]:
        """How key ``k`` starts: ``(kind, init, options, the key before it)``: from the key before it
        (gone on by ``extrapolate`` times the last step between keys, scaled to the time between
        them; ``smooth_key`` pulls toward it), or from the mean."""
        keys = self.plan.keys
        pos = keys.index(k)
        if pos == 0 or keys[pos - 1] not in self.latents:
            return "mean", None, self.options.project, None
        a = keys[pos - 1]
        start = self.latents[a]
        e = self.options.extrapolate
        if e > 0 and pos >= 2 and keys[pos - 2] in self.latents:
            b = keys[pos - 2]
            scale = (self.times[k] - self.times[a]) / max(self.times[a] - self.times[b], 1e-9)
            start = start + e * scale * (start - self.latents[b])
        return "key", start.unsqueeze(0), self.options.key, self.latents[a].unsqueeze(0)

    def _around(self, i: int) -> tuple[int, int] | None:
        """The keys before and after photo ``i`` (None when one of them has no latent)."""
        keys = self.plan.keys
        pos = sum(1 for k in keys if k < i)
        if pos == 0 or pos == len(keys) or keys[pos - 1] not in self.latents or keys[pos] not in self.latents:
            return None
        return keys[pos - 1], keys[pos]

    def _between(self, i: int) -> torch.Tensor:
        """Photo ``i``'s start: the latents of its two keys interpolated at its time."""
        a, b = self._around(i)
        span = self.times[b] - self.times[a]
        t = (self.times[i] - self.times[a]) / span if span > 0 else (i - a) / (b - a)
        return torch.lerp(self.latents[a], self.latents[b], float(t))

    def _project(self, idx: list[int], init: torch.Tensor | None, options: ProjectOptions, kind: str,
                 toward: torch.Tensor | None = None) -> Projection:
        """Photos ``idx`` from ``init`` (None: the mean); the smoothness term pulls toward ``toward``
        (default: the start)."""
        anchor = None
        toward = init if toward is None else toward
        if toward is not None and options.smooth > 0:
            with torch.no_grad():
                anchor = to_ws(self.G, toward.to(self.G.w_avg.device), options.space)
        proj = project(self.G, self.targets[idx], loss=self.loss, options=options, init=init, anchor=anchor,
                       w_std=self.w_std, generator=batch_generator(self.options.seed, self.times[idx[0]]),
                       callback=self.callback)
        proj.info.update(init=kind)
        return proj
