"""Chains: which photos of an age-ordered sequence are projected together, and from where.

:func:`plan_chains` cuts photos ``0..n-1`` into contiguous chains optimised side by side (round
``t`` is the ``t``-th photo of every chain); :func:`plan_sequence` is the plan of a fresh run and
:func:`plan_resume` that of a run continuing from finished photos, so that it repeats the batches
of an uninterrupted run. Pure Python: no torch, no files (a resumed plan's start latents come from
a function the caller gives).
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
    (ages; default the indices) seeding each batch's randomness with its first photo's key.
    """

    chains: list[list[int]]
    starts: list[Any] | None = None    # per chain: a latent [*space_shape] or None
    offsets: list[int] | None = None   # per chain: round of its first photo
    root: Any = None                   # latent [*space_shape] of the first chain's first photo
    keys: list[int] | None = None      # per target


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


def _options_chains(n: int, options: SequenceOptions) -> list[list[int]]:
    return plan_chains(n, options.batch, options.chain_length, options.min_chain)


def plan_sequence(n: int, options: SequenceOptions) -> ChainPlan:
    """The plan of a fresh run over ``n`` photos: with ``init="previous"``, :func:`plan_chains`
    ``(n, batch, chain_length, min_chain)``; with ``init="mean"``, every photo on its own."""
    if options.init == "mean":
        return ChainPlan([[i] for i in range(n)])
    return ChainPlan(_options_chains(n, options))


def plan_resume(done: Sequence[bool], options: SequenceOptions, load_start: Callable[[int], Any], *,
                first: int = 0, keys: Sequence[int] | None = None) -> ChainPlan:
    """The plan that finishes photos ``first .. first + len(done) - 1`` (``done``: which are
    finished) as an uninterrupted run would have.

    The chains are planned over all the photos, finished or not (:func:`plan_sequence`); each run
    of unfinished photos of a chain becomes a chain of the plan that starts, with
    ``init="previous"``, from the finished photo just before it (``load_start(index)``; None: from
    the root or the mean) at its position in the chain. The root (``heads`` root or best) is the
    first photo's latent when it is finished and a head still has to start from it.
    """
    chains: list[list[int]] = []
    starts: list[Any] = []
    offsets: list[int] = []
    warm = options.init == "previous"
    for chain in _options_chains(len(done), options):
        for pos, k in enumerate(chain):
            i = first + k
            if done[k]:
                continue
            if chains and chains[-1][-1] == i - 1 and pos > 0:
                chains[-1].append(i)
                continue
            chains.append([i])
            starts.append(load_start(i - 1) if warm and pos > 0 else None)
            offsets.append(pos if warm else 0)
    root = None
    if (warm and options.heads != "mean" and len(done) and done[0]
            and any(c[0] != first and s is None for c, s in zip(chains, starts))):
        root = load_start(first)
    return ChainPlan(chains, starts, offsets, root, None if keys is None else list(keys))
