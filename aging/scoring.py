"""Scoring age models: errors per pair and per target age, trivial baselines, folds, linearity.

Every error is the study's metric, the mean squared error per latent component. Beside each
model three references are reported on the same pairs:

* ``start``: predict the start latent (no aging at all);
* ``mean``: predict the subject's mean latent over its training photos (undefined for a
  held-out subject);
* ``truth``: on synthetic data, the noise-free latent of the target photo (the noise floor no
  model can beat on average).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from aging import io
from aging.ages import DAYS_PER_YEAR
from aging.latents import EvalProtocol, Fold, LatentDataset, LatentDatasetError, PairSet
from aging.progress import progress_bar

REFERENCES = ("start", "mean", "truth")


@dataclass
class PairErrors:
    """Per-pair errors (MSE per component) of a model and the references on one pair set."""

    start_ages: np.ndarray  # [P] days
    target_ages: np.ndarray  # [P] days
    subject: np.ndarray  # [P] subject index
    model: np.ndarray  # [P]
    refs: dict[str, np.ndarray | None] = field(default_factory=dict)  # name -> [P] or None

    @classmethod
    def concat(cls, parts: list["PairErrors"]) -> "PairErrors":
        refs = {}
        for name in REFERENCES:
            vals = [p.refs.get(name) for p in parts]
            refs[name] = None if any(v is None for v in vals) else np.concatenate(vals)
        return cls(
            np.concatenate([p.start_ages for p in parts]),
            np.concatenate([p.target_ages for p in parts]),
            np.concatenate([p.subject for p in parts]),
            np.concatenate([p.model for p in parts]),
            refs,
        )

    def summary(self) -> dict:
        """``{"mse": model, "start": .., "mean": .., "truth": ..}`` (None where undefined)."""
        out = {"mse": _mean(self.model)}
        for name in REFERENCES:
            out[name] = _mean(self.refs.get(name))
        return out

    def by_target_age(self) -> list[dict]:
        """One row per distinct target age: mean errors of the model and the references."""
        ages, inv = np.unique(self.target_ages, return_inverse=True)
        counts = np.bincount(inv)
        rows = []
        cols = {"model": self.model, **{k: v for k, v in self.refs.items()}}
        sums = {k: (np.bincount(inv, weights=v) if v is not None else None) for k, v in cols.items()}
        for i, age in enumerate(ages):
            row = {"target_age_days": int(age), "target_age_years": round(age / DAYS_PER_YEAR, 4),
                   "pairs": int(counts[i])}
            for k in ("model",) + REFERENCES:
                s = sums.get(k)
                row[k] = None if s is None else float(s[i] / counts[i])
            rows.append(row)
        return rows


def _mean(x) -> float | None:
    return None if x is None or len(x) == 0 else float(np.mean(x))


def subject_means(pairs: PairSet) -> dict[int, np.ndarray]:
    """Mean latent of each subject over the photos a training set may see: ``{subject: [D]}``."""
    ds = pairs.dataset
    return {int(ds.subject_of[seq[0]]): ds.latents_flat[seq].astype(np.float64).mean(0)
            for seq in pairs.sequences()}


def pair_errors(model, pairs: PairSet, means: dict[int, np.ndarray] | None = None, *,
                progress: bool = False, desc: str = "evaluate") -> PairErrors:
    """Errors of ``model`` and the references on every pair.

    Pairs are grouped by start photo, so that ``model.predict`` runs once per start with all its
    target ages; the references need no prediction: ``|start - target|^2`` comes from dot
    products, and the ``mean`` and ``truth`` errors depend on the target photo alone. A progress
    bar (``progress``) is shown only for large pair sets.
    """
    ds = pairs.dataset
    lat = ds.latents_flat  # [N, D] float32
    dim = lat.shape[1]
    sq = np.einsum("ij,ij->i", lat, lat, dtype=np.float64)  # [N] |l|^2
    err = np.empty(len(pairs))
    ref_start = np.empty(len(pairs))
    starts, groups = pairs.by_start()
    bar = progress_bar(zip(starts, groups), total=len(starts), desc=desc, unit="start",
                       quiet=not progress or len(pairs) <= 20000)
    for s, idx in bar:
        targets = pairs.target[idx]
        truth = lat[targets]  # [T, D]
        pred = model.predict(lat[s], ds.ages[s], ds.ages[targets]).reshape(len(idx), dim)
        pred -= truth
        err[idx] = np.einsum("ij,ij->i", pred, pred, dtype=np.float64) / dim
        ref_start[idx] = (sq[s] + sq[targets] - 2.0 * (truth @ lat[s]).astype(np.float64)) / dim
    refs = {"start": np.maximum(ref_start, 0.0), "mean": _mean_errors(pairs, means), "truth": _truth_errors(pairs)}
    return PairErrors(ds.ages[pairs.start], ds.ages[pairs.target], ds.subject_of[pairs.start], err, refs)


def _mean_errors(pairs: PairSet, means: dict[int, np.ndarray] | None) -> np.ndarray | None:
    """Per pair, the error of predicting the subject's mean latent (None where a subject has none)."""
    if means is None:
        return None
    ds = pairs.dataset
    per_photo = np.full(ds.num_photos, np.nan)
    for k, m in means.items():
        ph = ds.photos_of(k)
        per_photo[ph] = np.mean((ds.latents_flat[ph] - m[None, :]) ** 2, axis=1)
    ref = per_photo[pairs.target]
    return None if np.isnan(ref).any() else ref  # undefined for subjects without training photos


def _truth_errors(pairs: PairSet) -> np.ndarray | None:
    """Per pair, the error of the noise-free target latent (synthetic data only)."""
    ds = pairs.dataset
    if ds.clean_flat is None:
        return None
    return np.mean((ds.clean_flat.astype(np.float64) - ds.latents_flat) ** 2, axis=1)[pairs.target]


@dataclass
class FoldScore:
    """A model fitted on one fold's training pairs, its errors, and the time each took."""

    model: object
    train: PairErrors
    test: PairErrors
    fit_seconds: float
    eval_seconds: float

    def row(self, fold: Fold) -> dict:
        return {"holdout": fold.holdout, "n_train_pairs": len(fold.train), "n_test_pairs": len(fold.test),
                "train": self.train.summary(), "test": self.test.summary()}


@dataclass
class ScoreResult:
    """Everything one model configuration produced on one dataset."""

    model: object  # the model to keep (see ``final_model`` in ``metrics``)
    metrics: dict
    train: PairErrors
    test: PairErrors


def score_fold(fold: Fold, make: Callable[[], object], *, progress: bool = False) -> FoldScore:
    """Fit a fresh model (``make()``) on the fold's training pairs and measure it on both sets."""
    t0 = time.perf_counter()
    model = make().fit(fold.train, progress=progress)
    t1 = time.perf_counter()
    means = subject_means(fold.train)
    train = pair_errors(model, fold.train, means, progress=progress, desc="train errors")
    test = pair_errors(model, fold.test, means, progress=progress, desc="test errors")
    return FoldScore(model, train, test, t1 - t0, time.perf_counter() - t1)


def fit_and_score(dataset: LatentDataset, make: Callable[[], object], protocol: EvalProtocol = EvalProtocol(), *,
                  progress: bool = False) -> ScoreResult:
    """Fit a fresh model (``make()``) on each fold's training pairs of ``protocol`` and measure it.

    For ``internal`` and ``future`` splits there is one fold and its model is kept. For
    ``external`` every subject is held out in turn (or only ``protocol.holdout``); errors are
    pooled over the folds and the kept model is refitted on the pairs of all subjects.
    """
    folds = protocol.folds(dataset)
    scores = [score_fold(fold, make, progress=progress)
              for fold in progress_bar(folds, desc="folds", quiet=not progress or len(folds) == 1)]
    model, refit_seconds = scores[-1].model, 0.0
    final = "fold model (fit on the training pairs)"
    if protocol.split == "external":
        t0 = time.perf_counter()
        model = make().fit(protocol.every_pair(dataset), progress=progress)
        refit_seconds = time.perf_counter() - t0
        final = "refit on the pairs of all subjects (errors are from the leave-one-subject-out folds)"
    train = PairErrors.concat([s.train for s in scores])
    test = PairErrors.concat([s.test for s in scores])
    tr_sum, te_sum = train.summary(), test.summary()
    metrics = {
        "model": model.name,
        "params": io.to_jsonable(model.get_params()),
        "chosen": io.to_jsonable(model.chosen()),
        "pairs": protocol.pairs,
        "split": protocol.split,
        "seed": protocol.seed,
        "n_pairs": protocol.n_pairs if protocol.pairs == "random" else None,
        "min_gap": protocol.min_gap,
        "holdout": protocol.holdout,
        "n_train_pairs": int(len(train.model)),
        "n_test_pairs": int(len(test.model)),
        "train_mse": tr_sum["mse"],
        "test_mse": te_sum["mse"],
        "baselines": {name: {"train_mse": tr_sum[name], "test_mse": te_sum[name]} for name in REFERENCES},
        "folds": [s.row(fold) for s, fold in zip(scores, folds)],
        "fit_seconds": round(sum(s.fit_seconds for s in scores) + refit_seconds, 3),
        "eval_seconds": round(sum(s.eval_seconds for s in scores), 3),
        "final_model": final,
        "latent_shape": list(dataset.latent_shape),
        "subjects": dataset.names,
        "dataset": str(dataset.root) if dataset.root else None,
    }
    return ScoreResult(model, metrics, train, test)


# ---------------------------------------------------------------------------------------------
# Linearity analysis
# ---------------------------------------------------------------------------------------------


def _trend_residuals(ds: LatentDataset, min_photos: int):
    """Per subject of at least ``min_photos`` photos: its centred latents ``[n, D]`` and their
    residuals after a linear fit against age ``[n, D]`` (float64)."""
    for s in ds.subjects:
        if len(s) < min_photos:
            continue
        a = (s.ages - s.ages.mean()) / DAYS_PER_YEAR
        xc = s.latents.reshape(len(s), -1).astype(np.float64)
        xc = xc - xc.mean(0)
        slope = a @ xc / (a @ a)
        yield xc, xc - a[:, None] * slope[None, :]


def explained_variance(ds: LatentDataset) -> float:
    """Fraction of the within-subject latent variance explained by a per-subject linear age fit."""
    total, resid = 0.0, 0.0
    for xc, r in _trend_residuals(ds, 2):
        total += float((xc**2).sum())
        resid += float((r**2).sum())
    return 1.0 - resid / total if total > 0 else float("nan")  # no variance at all: undefined


def lag1_autocorrelation(ds: LatentDataset) -> float:
    """Mean lag-1 autocorrelation of the residuals of a per-subject linear age fit."""
    vals = [np.mean((r[1:] * r[:-1]).sum(0) / np.maximum((r**2).sum(0), 1e-12))
            for _, r in _trend_residuals(ds, 3)]
    return float(np.mean(vals)) if vals else float("nan")


def line_distances(latents: np.ndarray, i: int, j: int) -> np.ndarray:
    """Distance of every latent from the line through latents ``i`` and ``j``: ``[n]``.

    With ``a`` the first anchor, ``n`` the unit direction to the second and ``p`` a point,
    ``d = (a - p) - ((a - p) . n) n`` and the distance is ``|d|`` (per-component RMS, so that
    values compare across latent sizes).
    """
    x = latents.reshape(len(latents), -1).astype(np.float64)
    a = x[i]
    n = x[j] - a
    norm = np.linalg.norm(n)
    if norm == 0:
        raise LatentDatasetError("the two anchor latents are identical")
    n /= norm
    ap = a[None, :] - x
    d = ap - (ap @ n)[:, None] * n[None, :]
    return np.sqrt(np.mean(d**2, axis=1))


def check_anchors(anchors: tuple[int, int], n: int, name: str = "the subject") -> tuple[int, int]:
    """Two distinct photo indices of a sequence of ``n`` photos (negative ones count from the end)
    as non-negative indices; an index outside ``-n .. n-1`` is refused, never wrapped round."""
    out = []
    for a in anchors:
        if not -n <= a < n:
            raise LatentDatasetError(f"photo index {a} is out of range: {name} has {n} photos "
                                     f"(indices 0..{n - 1}, or -{n}..-1 from the end)")
        out.append(a % n)
    if out[0] == out[1]:
        raise LatentDatasetError(f"the two anchors are the same photo (index {out[0]} of {name})")
    return out[0], out[1]


def linearity(dataset: LatentDataset, subject: str | int = 0, anchors: tuple[int, int] = (0, -1)) -> dict:
    """Linearity of one subject's sequence: distances from the anchor line, step variances."""
    k = dataset.index_of(subject) if isinstance(subject, str) else int(subject)
    if not 0 <= k < len(dataset.subjects):
        raise LatentDatasetError(f"no subject #{k} (the dataset has {len(dataset.subjects)})")
    s = dataset.subjects[k]
    i, j = check_anchors(anchors, len(s), s.name)
    dist = line_distances(s.latents, i, j)
    x = s.latents.reshape(len(s), -1).astype(np.float64)
    steps = np.diff(x, axis=0) / np.diff(s.ages)[:, None]
    return {
        "subject": s.name,
        "ages": s.ages,
        "anchors": (int(i), int(j)),
        "distances": dist,
        "step_variances": steps.var(axis=0),  # [D] per component, per day^2
    }
