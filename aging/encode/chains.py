"""Plans: which photos of an age-ordered sequence are projected together, and from where.

``init="interpolate"`` (:class:`KeyPlan`, :func:`key_photos`): every ``key_every``-th photo and the
last are *keys*, tracked one from the other from the first (projected from the mean); the photos
between two keys start from the keys' interpolation, in batches. ``init="previous"``
(:class:`ChainPlan`): :func:`plan_chains` cuts photos ``0..n-1`` into contiguous chains optimised
side by side (round ``t`` is the ``t``-th photo of every chain). :func:`plan_sequence` is the
plan of a fresh run and :func:`plan_resume` that of a run continuing from finished photos, so that
it repeats the batches of an uninterrupted run. Pure Python: no torch, no files (a resumed plan's
start latents come from a function the caller gives).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from aging.encode.options import SequenceOptions


@dataclass(frozen=True)
class ChainPlan:
    """What :func:`~aging.encode.projector.project_sequence` projects.

    ``chains`` are indices into the targets (each in age order, disjoint); photos outside every
    chain are not projected. The other fields are optional: ``starts`` per chain, the latent (in the
    projection's space) of the photo just before it, or None (the chain's first photo is a *head*);
    ``offsets`` per chain, the round of its first photo (a resumed chain keeps its position in the
    chain it continues); ``root``, the latent the heads start from (``heads="root"``/``"best"``;
    default: found by projecting the first head from the mean); ``keys``, one integer per target
    (ages; default the indices) seeding each batch's randomness with its first photo's key;
    ``befores`` per chain, the latent of the photo two before it or None (``extrapolate``);
    ``sources``, ``levels`` and ``finished``: where the heads start with ``heads="nearest"``
    (:func:`head_sources`).
    """

    chains: list[list[int]]
    starts: list[Any] | None = None    # per chain: a latent [*space_shape] or None
    offsets: list[int] | None = None   # per chain: round of its first photo
    root: Any = None                   # latent [*space_shape] of the first chain's first photo
    keys: list[int] | None = None      # per target
    befores: list[Any] | None = None   # per chain: the latent of the photo two before it, or None
    sources: list[int | None] | None = None  # heads="nearest", per chain: the photo its head starts from
    levels: list[int] | None = None    # heads="nearest", per chain: when its head comes (0 first; -1 not a head)
    finished: dict | None = None       # heads="nearest": latents of finished photos that heads start from

    @property
    def photos(self) -> int:
        """The number of photos to project."""
        return sum(map(len, self.chains))


@dataclass(frozen=True)
class KeyPlan:
    """What :func:`~aging.encode.projector.project_sequence` projects with ``init="interpolate"``.

    ``keys``: every key of the sequence, in order (:func:`key_photos`); ``todo``: the keys to
    project, in order, each from the key before it (the first key of the sequence from the mean);
    ``fills``: batches of the photos between keys to project, each from the interpolation of the two
    keys around it; ``latents``: the finished keys the run needs (index -> latent in the
    projection's space); ``keys_of``: one integer per target, its time (ages; default the indices)
    and the seed of a batch that it comes first in.
    """

    keys: list[int]
    todo: list[int]
    fills: list[list[int]]
    latents: dict
    keys_of: list[int] | None = None

    @property
    def photos(self) -> int:
        """The number of photos to project."""
        return len(self.todo) + sum(map(len, self.fills))


def key_photos(first: int, n: int, every: int) -> list[int]:
    """The keys of photos ``first .. first + n - 1``: every ``every``-th from the first, and the last.
    ``key_photos(0, 20, 8) == [0, 8, 16, 19]``."""
    if n <= 0:
        return []
    keys = list(range(first, first + n, every))
    return keys if keys[-1] == first + n - 1 else keys + [first + n - 1]


def plan_keys(done: Sequence[bool], options: SequenceOptions, load_start: Callable[[int], Any] | None = None, *,
              first: int = 0, keys: Sequence[int] | None = None) -> KeyPlan:
    """The :class:`KeyPlan` that finishes photos ``first .. first + len(done) - 1`` (``done``: which
    are finished) as an uninterrupted run would have: the same key chain (a key to do starts from
    the key before it, loaded with ``load_start`` when finished; with ``extrapolate``, the key before
    that too) and the same batches of the photos between keys (``options.batch`` at a time, planned
    over all of them), less the finished photos."""
    n = len(done)
    key_list = key_photos(first, n, options.key_every)
    is_key = set(key_list)
    todo = [k for k in key_list if not done[k - first]]
    between = [i for i in range(first, first + n) if i not in is_key]
    batches = [between[a:a + options.batch] for a in range(0, len(between), options.batch)]
    fills = [b for b in ([i for i in batch if not done[i - first]] for batch in batches) if b]
    need = set()
    for k in todo:
        pos = key_list.index(k)
        need.update(key_list[max(0, pos - (2 if options.extrapolate > 0 else 1)):pos])
    for batch in fills:
        for i in batch:
            pos = sum(1 for k in key_list if k < i)
            need.update(key_list[pos - 1:pos + 1])
    latents = {k: load_start(k) for k in sorted(need) if done[k - first]} if load_start else {}
    return KeyPlan(key_list, todo, fills, latents, None if keys is None else list(keys))


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


def head_sources(heads: Sequence[int]) -> list[tuple[int, int | None]]:
    """For ``heads="nearest"``: ``(level, source)`` of each chain whose first photo is ``heads[c]``.

    The first head (level 0) starts from the mean; then, level by level, a head in the middle of
    every gap between the heads done (and after the last) starts from the nearest of them (the
    earlier on a tie): ``[0, 16, 32, 48]`` gives ``[(0, None), (2, 0), (1, 0), (2, 32)]``, so
    heads start 16 photos from their source instead of up to 48 from the first photo.
    """
    count = len(heads)
    out: list[tuple[int, int | None]] = [(0, None)] * count
    done = [0] if count else []
    level = 0
    while len(done) < count:
        level += 1
        bounds = sorted(done) + [count]
        new = [(a + b) // 2 for a, b in zip(bounds, bounds[1:]) if (a + b) // 2 > a]
        for m in new:
            source = min(sorted(done), key=lambda d: abs(heads[m] - heads[d]))
            out[m] = (level, heads[source])
        done += new
    return out


def _nearest(chains: list[list[int]], options: SequenceOptions) -> tuple[list, list] | tuple[None, None]:
    """``(levels, sources)`` per chain for ``heads="nearest"`` (None, None otherwise)."""
    if options.init != "previous" or options.heads != "nearest":
        return None, None
    found = head_sources([c[0] for c in chains])
    return [lv for lv, _ in found], [src for _, src in found]


def _options_chains(n: int, options: SequenceOptions) -> list[list[int]]:
    return plan_chains(n, options.batch, options.chain_length, options.min_chain)


def plan_sequence(n: int, options: SequenceOptions) -> ChainPlan | KeyPlan:
    """The plan of a fresh run over ``n`` photos: with ``init="previous"``, :func:`plan_chains`
    ``(n, batch, chain_length, min_chain)``; with ``init="mean"``, every photo on its own; with
    ``init="interpolate"``, the :class:`KeyPlan` of :func:`plan_keys`."""
    if options.init == "mean":
        return ChainPlan([[i] for i in range(n)])
    if options.init == "interpolate":
        return plan_keys([False] * n, options)
    chains = _options_chains(n, options)
    levels, sources = _nearest(chains, options)
    return ChainPlan(chains, sources=sources, levels=levels)


def plan_resume(done: Sequence[bool], options: SequenceOptions, load_start: Callable[[int], Any], *,
                first: int = 0, keys: Sequence[int] | None = None) -> ChainPlan | KeyPlan:
    """The plan that finishes photos ``first .. first + len(done) - 1`` (``done``: which are
    finished) as an uninterrupted run would have.

    The chains are planned over all the photos, finished or not (:func:`plan_sequence`); each run
    of unfinished photos of a chain becomes a chain of the plan that starts, with
    ``init="previous"``, from the finished photo just before it (``load_start(index)``; None: from
    the root or the mean) at its position in the chain. The root (``heads`` root or best) is the
    first photo's latent when it is finished and a head still has to start from it; with
    ``extrapolate``, a chain's photo two before its first (``befores``) is loaded too. With
    ``init="interpolate"``: :func:`plan_keys`.
    """
    if options.init == "interpolate":
        return plan_keys(done, options, load_start, first=first, keys=keys)
    chains: list[list[int]] = []
    starts: list[Any] = []
    befores: list[Any] = []
    offsets: list[int] = []
    warm = options.init == "previous"
    planned = _options_chains(len(done), options)
    near_levels, near_sources = _nearest(planned, options)
    levels: list[int] = []
    sources: list[int | None] = []
    finished: dict = {}
    for ci, chain in enumerate(planned):
        for pos, k in enumerate(chain):
            i = first + k
            if done[k]:
                continue
            if chains and chains[-1][-1] == i - 1 and pos > 0:
                chains[-1].append(i)
                continue
            chains.append([i])
            starts.append(load_start(i - 1) if warm and pos > 0 else None)
            befores.append(load_start(i - 2) if warm and pos > 1 and options.extrapolate > 0 else None)
            head = near_levels is not None and pos == 0
            levels.append(near_levels[ci] if head else -1)
            sources.append(None if not head or near_sources[ci] is None else first + near_sources[ci])
            if sources[-1] is not None and done[sources[-1] - first] and sources[-1] not in finished:
                finished[sources[-1]] = load_start(sources[-1])
            offsets.append(pos if warm else 0)
    root = None
    if (warm and options.heads != "mean" and len(done) and done[0]
            and any(c[0] != first and s is None for c, s in zip(chains, starts))):
        root = load_start(first)
    near = near_levels is not None
    return ChainPlan(chains, starts, offsets, root, None if keys is None else list(keys), befores,
                     sources if near else None, levels if near else None, finished if near else None)
