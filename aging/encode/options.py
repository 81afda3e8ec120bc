"""Options of the encode stage: the single source of its defaults (no torch needed).

:class:`ProjectOptions` are the hyper-parameters of one batch's optimisation
(:func:`aging.encode.projector.project`); :class:`SequenceOptions` add how an age-ordered
sequence is cut into chains and warm-started (:func:`~aging.encode.projector.project_sequence`)
and hold the :class:`ProjectOptions` of every photo. Both are frozen: vary them with
:func:`dataclasses.replace`. The CLI reads its defaults from them, and ``encode.options.json``
records :func:`recorded` (their ``asdict``, flattened into one dict).

Both check their values when made: a bad one is an :class:`EncodeError` naming it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

from aging.errors import AgingError

SPACES = ("wplus", "w", "z")
INITS = ("mean", "previous", "interpolate")
HEADS = ("best", "mean", "root", "nearest")
NOISE_MODES = ("const", "random", "none")
OPTIMIZERS = ("adam", "lbfgs")


class EncodeError(AgingError, ValueError):
    """Bad input of the encode stage (one line; names the file or option)."""


@dataclass(frozen=True)
class ProjectOptions:
    """How each photo of a batch is optimised (see :mod:`aging.encode.projector`)."""

    steps: int = 1000                 # Adam updates of a photo started from the mean
    lr: float = 0.2                   # peak learning rate (w, wplus: in units of the per-component std of w)
    space: str = "wplus"              # wplus: one w per layer; w: one w; z: the mapping's input
    warmup: float = 0.05              # fraction of the steps of linear learning-rate warm-up
    decay: float = 0.5                # fraction of the steps of cosine decay to zero
    betas: tuple[float, float] = (0.9, 0.95)  # Adam's
    mean_reg: float = 0.0             # pull of every W+ layer toward the photo's mean w
    smooth: float = 0.0               # temporal smoothness: squared W+ step from the photo before
    clip: float = 3.0                 # z space: bound k of the stochastic clipping
    fp16: bool = False                # CUDA: half precision in synthesis (and VGG16) with loss scaling
    noise_mode: str = "const"         # the synthesis network's noise inputs
    patience: int = 0                 # a photo has converged when its objective has not improved by a fraction
    tol: float = 1e-3                 # tol in patience steps (0: no early stop, every photo runs all the steps)
    cooldown: int = 0                 # then its learning rate decays to zero (cosine) over this many steps, and it stops
    keep_best: bool = True            # each photo ends at the latent with the lowest objective seen (its start included)
    optimizer: str = "adam"           # adam; lbfgs: L-BFGS with a strong-Wolfe line search, photo by photo, float32
                                      # (steps: its objective evaluations; lr, schedule and patience unused; not z)

    def __post_init__(self):
        _choose("space", self.space, SPACES)
        _choose("noise_mode", self.noise_mode, NOISE_MODES)
        _choose("optimizer", self.optimizer, OPTIMIZERS)
        if self.optimizer == "lbfgs" and self.space == "z":
            raise EncodeError("optimizer lbfgs works in w and wplus, not z (its stochastic clipping needs adam)")
        _bound(self, steps=(1, False), lr=(0, True), warmup=(0, False), decay=(0, False), mean_reg=(0, False),
               smooth=(0, False), clip=(0, True), patience=(0, False), tol=(0, False), cooldown=(0, False))
        _whole(self, "patience", "cooldown")
        if self.warmup > 1 or self.decay > 1:
            raise EncodeError(f"warmup and decay are fractions of the steps (<= 1), got {self.warmup}, {self.decay}")
        if len(self.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas):
            raise EncodeError(f"betas must be two numbers in [0, 1), got {self.betas!r}")


@dataclass(frozen=True)
class SequenceOptions:
    """How an age-ordered sequence is projected (see :func:`~aging.encode.projector.project_sequence`):
    ``init="interpolate"``, key photos tracked one from the other and the photos between them started
    from the keys' interpolation; ``"previous"``, chains of consecutive photos optimised side by side,
    each photo warm-started from its predecessor; ``"mean"``, every photo on its own."""

    project: ProjectOptions = field(default_factory=ProjectOptions)  # photos started from the mean
    batch: int = 16                   # photos optimised together (halved on CUDA out-of-memory)
    init: str = "interpolate"         # mean: every photo from the mean; previous: from its predecessor; interpolate: keys
    key_every: int = 8                # interpolate: every this many photos a key (and the last photo)
    steps_key: int = 300              # interpolate: steps of a key started from the key before it (at lr_after_first)
    steps_fill: int = 40              # interpolate: steps of a photo between two keys, from their interpolation
    lr_fill: float = 0.01             # interpolate: their peak learning rate (they start closer than a key)
    key_optimizer: str = "lbfgs"      # interpolate: how a key is optimised (space z: always adam)
    smooth_key: float = 0.0007        # interpolate: a key's smoothness weight, toward the key before it
    polish_first: int = 300           # interpolate: L-BFGS evaluations after the first key's Adam steps (0: none)
    heads: str = "best"               # where the chains' first photos start: best, nearest, mean or root
    steps_after_first: int | None = 100  # steps of a warm-started photo (None: project.steps)
    lr_after_first: float = 0.05      # a warm start is already close: a full-size first Adam step would undo it
    extrapolate: float = 0.0          # a warm start goes on by this times the chain's last step (0: the predecessor)
    steps_near: int | None = 300      # steps of a head started from the nearest finished head (None: project.steps)
    chain_length: int | None = None   # at most this many photos per chain (None: no limit)
    min_chain: int = 8                # fewer chains than batch where shorter (a chain's head costs a full projection)
    seed: int = 0                     # a batch's randomness comes from the seed and its first photo's key
    identity: bool = True             # log each reconstruction's dlib identity distance to its photo

    def __post_init__(self):
        if not isinstance(self.project, ProjectOptions):
            raise EncodeError(f"project must be ProjectOptions, got {type(self.project).__name__}")
        _choose("init", self.init, INITS)
        _choose("heads", self.heads, HEADS)
        _choose("key_optimizer", self.key_optimizer, OPTIMIZERS)
        _bound(self, batch=(1, False), lr_after_first=(0, True), min_chain=(1, False), seed=(0, False),
               extrapolate=(0, False), key_every=(1, False), steps_key=(1, False), steps_fill=(1, False),
               lr_fill=(0, True), smooth_key=(0, False), polish_first=(0, False))
        _whole(self, "polish_first")
        for name in ("steps_after_first", "chain_length", "steps_near"):
            if getattr(self, name) is not None:
                _bound(self, **{name: (1, False)})

    @property
    def after_first(self) -> ProjectOptions:
        """The options of a warm-started photo: ``steps_after_first`` steps at ``lr_after_first``."""
        steps = self.project.steps if self.steps_after_first is None else self.steps_after_first
        return replace(self.project, steps=steps, lr=self.lr_after_first)

    @property
    def key(self) -> ProjectOptions:
        """``init="interpolate"``: the options of a key started from the key before it."""
        optimizer = "adam" if self.project.space == "z" else self.key_optimizer
        return replace(self.project, steps=self.steps_key, lr=self.lr_after_first, optimizer=optimizer,
                       smooth=self.smooth_key)

    @property
    def polish(self) -> ProjectOptions | None:
        """``init="interpolate"``: the options of the first key's polish after its Adam steps (L-BFGS,
        ``polish_first`` evaluations, no smoothness), or None (none asked, or space z)."""
        if self.polish_first == 0 or self.project.space == "z":
            return None
        return replace(self.project, steps=self.polish_first, optimizer="lbfgs", smooth=0.0)

    @property
    def fill(self) -> ProjectOptions:
        """``init="interpolate"``: the options of a photo started between two keys."""
        return replace(self.project, steps=self.steps_fill, lr=self.lr_fill)


def recorded(options: SequenceOptions) -> dict:
    """The options as ``encode.options.json`` records them: the ``asdict`` of the projection options
    and of the sequence options, in one flat dict."""
    out = asdict(options.project)
    out.update((f.name, getattr(options, f.name)) for f in fields(options) if f.name != "project")
    return out


def from_values(values: dict) -> SequenceOptions:
    """:class:`SequenceOptions` from a flat dict of field values (the CLI's options): the fields of
    either class are taken out of ``values``; what is left is not an option of these classes."""
    project = {f.name: values.pop(f.name) for f in fields(ProjectOptions) if f.name in values}
    own = {f.name: values.pop(f.name) for f in fields(SequenceOptions) if f.name in values and f.name != "project"}
    return SequenceOptions(project=ProjectOptions(**project), **own)


def _choose(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise EncodeError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _whole(options, *names: str) -> None:
    """Each named field a whole number (of steps or evaluations)."""
    for name in names:
        value = getattr(options, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise EncodeError(f"{name} must be a whole number of steps, got {value!r}")


def _bound(options, **bounds: tuple[float, bool]) -> None:
    """Each named field a finite number (not a bool) above ``low`` (``strict``) or at least it."""
    for name, (low, strict) in bounds.items():
        value = getattr(options, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and (value > low if strict else value >= low)
        if not ok:
            raise EncodeError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")
