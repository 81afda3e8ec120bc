"""Component selection: which latent components a model may move.

``first``: the first ``n`` components (the study's baseline selection).
``linear``: the ``n`` components whose photo-to-photo steps (per day) vary least across the
training subjects, i.e. the components that move most steadily with age.
``norm``: the study's "normalised most linear" rule (its RegressionTrials notebook): each
component's vector of photo-to-photo steps is divided by its L2 norm (``sklearn.preprocessing.
normalize`` on the components x steps matrix) and components are ranked by the variance of that
unit vector. A unit vector's variance is ``1/S - mean^2``, so the rule prefers components whose
steps keep one sign and size, whatever their amplitude. Steps are per day, which ranks exactly as
the study's raw differences on evenly spaced photos.
"""

from __future__ import annotations

import numpy as np

SELECTIONS = ("first", "linear", "norm")


def photo_steps(pairs) -> np.ndarray:
    """Per-day steps between consecutive visible photos of each subject, stacked: ``[S, D]``."""
    ds = pairs.dataset
    steps = []
    for seq in pairs.sequences():
        if len(seq) < 2:
            continue
        lat = ds.latents_flat[seq].astype(np.float64)
        dt = np.diff(ds.ages[seq]).astype(np.float64)
        steps.append(np.diff(lat, axis=0) / dt[:, None])
    if not steps:
        raise ValueError("component selection needs at least one subject with two training photos")
    return np.concatenate(steps)


def step_variances(pairs, *, normalise: bool = False) -> np.ndarray:
    """Variance of each component's per-day photo-to-photo steps, pooled over subjects: ``[D]``.

    ``normalise``: of each component's steps divided by their L2 norm (the study's ``norm`` rule);
    a component that never moves keeps its zero steps (variance 0).
    """
    steps = photo_steps(pairs)  # [S, D]
    if normalise:
        length = np.sqrt(np.einsum("sd,sd->d", steps, steps))  # [D] L2 norm over the steps
        steps = steps / np.where(length > 0, length, 1.0)[None, :]
    return steps.var(axis=0)


def select_components(pairs, method: str | None, n: int | None) -> np.ndarray:
    """Flat indices of the selected components, sorted. ``method=None`` selects everything."""
    dim = pairs.dataset.dim
    if method is None or method == "all" or n is None:
        return np.arange(dim)
    if method not in SELECTIONS:
        raise ValueError(f"unknown component selection {method!r} (choose from {', '.join(SELECTIONS)})")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"parameter dims must be a whole number, got {n!r}")
    n = int(n)
    if not 1 <= n <= dim:
        raise ValueError(f"parameter dims must be between 1 and {dim} (the number of latent components), got {n}")
    if method == "first":
        return np.arange(n)
    var = step_variances(pairs, normalise=(method == "norm"))
    return np.sort(np.argsort(var, kind="stable")[:n])
