"""``trend``: a denoised start moved along a shrunk, pooled age trend.

Each encoded photo carries independent noise that dwarfs a few years of aging (on the study's
latents about 0.0092 of the 0.0098 per-component variance), so a model that starts from the one
start photo inherits its noise, and a least-squares trend extrapolates too steeply. ``trend``
predicts

    latent(t) = level + shrinkage * slope * (t - anchor)

* ``level``: the mean of the subject's training photos within ``window`` years of the start age
  (a box window; ``0``: the start photo alone, ``100``: every photo, the subject's mean), and
  ``anchor`` the mean age of those photos. A start the model has not seen among its training
  photos (a held-out subject) is its own level, anchored at the start age.
* ``slope``: the within-subject least-squares slope of the latents against age, pooled over every
  training subject; optionally only on components whose slope has a t statistic of at least
  ``min_t`` (the others keep the level).
* ``window``, ``min_t`` and ``shrinkage`` are chosen among the candidates by a cross-validation
  that respects time: on each subject's earliest training photos (a ``1 - val_fraction`` share)
  the slope and levels are fitted, and the training pairs that start there and end at the
  subject's later training photos are predicted. The error of every candidate comes from Gram
  matrices and prefix sums, in closed form (it is a quadratic in the shrinkage).

The model sees its subjects only through the training pairs (``pairs.photos``: every photo it may
learn from), and ``predict`` gets a start latent, not a subject: a start latent is recognised as a
training photo by its content (an 8-byte fingerprint of its float32 values; among equal latents,
the one nearest to the start age). Only the levels, one per distinct window, are saved, not the
photos. With ``shrinkage`` 0 and a window wider than the subject's training ages the model is
the ``mean`` baseline of :mod:`aging.scoring`.
"""

from __future__ import annotations

import hashlib

import numpy as np

from aging.ages import DAYS_PER_YEAR
from aging.models.base import AgeModel, ModelError, Param, check_array, register

DEFAULT_WINDOWS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 100.0)  # years either side of the start age
DEFAULT_SHRINKAGES = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1
DEFAULT_MIN_T = (0.0, 2.0, 4.0)


def fingerprint(latent: np.ndarray) -> np.uint64:
    """An 8-byte digest of a latent's float32 values (how ``predict`` recognises a training photo)."""
    data = np.ascontiguousarray(latent, dtype=np.float32).tobytes()
    return np.uint64(int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little"))


def pooled_trend(ds, seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The pooled within-subject slope (per day) of the photos ``seqs`` and its t statistic: ``[D]`` each.

    A component whose residuals vanish has an infinite t statistic (zero where its slope is zero),
    as do all components when there are no residual degrees of freedom.
    """
    num, den, sxx, dof = np.zeros(ds.dim), 0.0, np.zeros(ds.dim), -1
    for seq in seqs:
        if len(seq) < 2:
            continue
        a = ds.ages[seq].astype(np.float64)
        a -= a.mean()
        xc = ds.latents_flat[seq].astype(np.float64)
        xc -= xc.mean(axis=0)
        num += a @ xc
        den += float(a @ a)
        sxx += np.einsum("nd,nd->d", xc, xc)
        dof += len(seq) - 1
    if den == 0:
        raise ModelError("model trend: no training subject has two photos of different ages")
    slope = num / den
    resid = np.maximum(sxx - slope**2 * den, 0.0)
    se = np.sqrt(resid / max(dof, 1) / den)
    noisy = (se > 1e-12 * np.abs(slope)) & (dof > 0)
    tstat = np.where(noisy, np.abs(slope) / np.where(noisy, se, 1.0), np.where(slope != 0, np.inf, 0.0))
    return slope, tstat


def box_windows(ages: np.ndarray, centres: np.ndarray, half_days: float) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the photos of sorted ``ages`` within ``half_days`` of each centre are ``lo:hi``."""
    return (np.searchsorted(ages, centres - half_days, side="left"),
            np.searchsorted(ages, centres + half_days, side="right"))


def _padded_cumsum(x: np.ndarray, axis: int = 0) -> np.ndarray:
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    return np.pad(np.cumsum(x, axis=axis), pad)


def subject_cv_terms(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], counts: np.ndarray,
                     slopes: np.ndarray, windows_days: np.ndarray) -> np.ndarray:
    """One subject's validation error as ``A + 2 c B + c^2 C`` of the shrinkage ``c``.

    ``train``: the latents ``[m, D]`` and ages ``[m]`` of its earliest photos, ``val`` those of its
    later ones ``[v, D]``, ``[v]``; ``counts [m, v]``: validation pairs from each early photo to each
    later one; ``slopes [D, T]``: the candidate slopes. Returns ``[3, W, T]`` (A, B, C summed over
    the pairs, per window and slope).
    """
    (x, a), (y, b) = train, val
    mu = x.mean(axis=0)
    x, y = x - mu, y - mu  # every term is translation invariant; centring keeps it precise
    gram = _padded_cumsum(_padded_cumsum(x @ x.T, 0), 1)  # [m+1, m+1] 2-D prefix sums
    cross = _padded_cumsum(x @ y.T)  # [m+1, v]
    xs, ys = _padded_cumsum(x @ slopes), y @ slopes  # [m+1, T], [v, T]
    ages = _padded_cumsum(a)
    yy = np.einsum("vd,vd->v", y, y)
    ss = np.einsum("dt,dt->t", slopes, slopes)
    out = np.zeros((3, len(windows_days), slopes.shape[1]))
    for w, half in enumerate(windows_days):
        lo, hi = box_windows(a, a, half)
        n = (hi - lo).astype(np.float64)
        level_sq = (gram[hi, hi] - gram[lo, hi] - gram[hi, lo] + gram[lo, lo]) / n**2  # [m] |level|^2
        level_y = (cross[hi] - cross[lo]) / n[:, None]  # [m, v]
        level_s = (xs[hi] - xs[lo]) / n[:, None]  # [m, T]
        dt = b[None, :] - ((ages[hi] - ages[lo]) / n)[:, None]  # [m, v] target age - anchor
        mdt = counts * dt
        out[0, w] = float(np.sum(counts * (level_sq[:, None] - 2.0 * level_y + yy[None, :])))
        out[1, w] = mdt.sum(axis=1) @ level_s - mdt.sum(axis=0) @ ys
        out[2, w] = float(np.sum(mdt * dt)) * ss
    return out


def _inner_split(seq: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """A subject's training photos -> (earlier, later): the later ones validate (none below 3 photos)."""
    n = len(seq)
    if n < 3:
        return seq, seq[:0]
    m = min(max(int(np.ceil((1.0 - fraction) * n)), 2), n - 1)
    return seq[:m], seq[m:]


def cv_errors(pairs, fraction: float, windows_days: np.ndarray, min_t: np.ndarray,
              shrinkages: np.ndarray) -> np.ndarray | None:
    """Validation MSE per component of every candidate ``[W, T, C]``; ``None`` when no subject has
    photos to validate on (fewer than 3 training photos each)."""
    ds = pairs.dataset
    inner = [_inner_split(seq, fraction) for seq in pairs.sequences()]
    if not any(len(v) for _, v in inner):
        return None
    slope, tstat = pooled_trend(ds, [t for t, _ in inner])
    slopes = slope[:, None] * (tstat[:, None] >= min_t[None, :])  # [D, T]
    role = np.zeros(ds.num_photos, np.int8)  # 1: earlier (fit), 2: later (validate)
    pos = np.zeros(ds.num_photos, np.int64)  # a photo's place among its subject's earlier / later ones
    for t, v in inner:
        role[t], role[v] = 1, 2
        pos[t], pos[v] = np.arange(len(t)), np.arange(len(v))
    chosen = (role[pairs.start] == 1) & (role[pairs.target] == 2)
    terms, n_pairs = np.zeros((3, len(windows_days), len(min_t))), 0
    for t, v in inner:
        if not len(v):
            continue
        if chosen.any():
            counts = np.zeros((len(t), len(v)))
            sel = chosen & (ds.subject_of[pairs.start] == ds.subject_of[t[0]])
            np.add.at(counts, (pos[pairs.start[sel]], pos[pairs.target[sel]]), 1.0)
        else:  # the pairing gave none: every earlier photo to every later one
            counts = np.ones((len(t), len(v)))
        n_pairs += int(counts.sum())
        terms += subject_cv_terms((ds.latents_flat[t].astype(np.float64), ds.ages[t].astype(np.float64)),
                                  (ds.latents_flat[v].astype(np.float64), ds.ages[v].astype(np.float64)),
                                  counts, slopes, windows_days)
    if n_pairs == 0:
        return None
    a, b, c = (x[..., None] for x in terms)
    return (a + 2.0 * shrinkages * b + shrinkages**2 * c) / (n_pairs * ds.dim)


@register
class TrendModel(AgeModel):
    """A denoised start (the mean of the subject's photos near the start age) moved along the
    pooled within-subject age trend, shrunk toward zero; window, shrinkage and component
    restriction chosen by a cross-validation that fits on earlier photos and validates on later
    ones (see the module's documentation).

    Parameters
    ----------
    windows : float or list of float
        Candidate half-widths, in years, of the window of photos averaged around the start age
        (``0``: the start photo alone; one wider than the subject's ages: its mean).
    shrinkages : float or list of float in [0, 1]
        Candidate factors of the pooled slope (``0``: no aging, ``1``: the least-squares trend).
    min_t : float or list of float
        Candidate thresholds on the t statistic of a component's slope below which it does not
        move (``0``: every component moves).
    val_fraction : float
        Share of each subject's training photos, its latest, that the cross-validation predicts.
    """

    name = "trend"
    _state_arrays = ("slope_", "tstat_", "window_", "min_t_", "shrinkage_", "cv_scores_", "levels_",
                     "level_ages_", "level_of_", "photo_ages_", "fingerprints_")
    _params = {
        "windows": Param("floats", low=0.0),
        "shrinkages": Param("floats", low=0.0, high=1.0),
        "min_t": Param("floats", low=0.0),
        "val_fraction": Param("float", low=0.0, high=1.0, low_open=True, high_open=True),
    }

    def __init__(self, windows=DEFAULT_WINDOWS, shrinkages=DEFAULT_SHRINKAGES, min_t=DEFAULT_MIN_T,
                 val_fraction=0.2):
        self.windows = windows
        self.shrinkages = shrinkages
        self.min_t = min_t
        self.val_fraction = val_fraction

    def _candidates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The candidate windows (years), t thresholds and shrinkages, each sorted and distinct."""
        return tuple(np.unique(np.asarray(v, dtype=np.float64)) for v in (self.windows, self.min_t, self.shrinkages))

    def fit(self, pairs, *, progress=False):
        self._begin_fit(pairs)
        windows, min_t, shrinkages = self._candidates()
        scores = cv_errors(pairs, float(self.val_fraction), windows * DAYS_PER_YEAR, min_t, shrinkages)
        if scores is None or not np.all(np.isfinite(scores)):  # nothing to validate on: the subject mean
            scores = np.full((len(windows), len(min_t), len(shrinkages)), np.nan)
            w, t, c = int(np.argmax(windows)), int(np.argmin(min_t)), int(np.argmin(shrinkages))
        else:  # ties go to the wider window (the subject's mean), the lower threshold, the smaller factor
            w, t, c = np.unravel_index(int(np.argmin(scores[::-1])), scores.shape)
            w = len(windows) - 1 - w
        self.cv_scores_ = scores
        self.window_, self.min_t_, self.shrinkage_ = (np.float64(windows[w]), np.float64(min_t[t]),
                                                      np.float64(shrinkages[c]))
        slope, self.tstat_ = pooled_trend(pairs.dataset, pairs.sequences())
        self.slope_ = np.where(self.tstat_ >= self.min_t_, slope, 0.0)  # [D] per day
        self._fit_levels(pairs)
        return self

    def chosen(self) -> dict:
        """The cross-validated window (years), shrinkage and t threshold, and how many components move."""
        self.check_fitted()
        return {"window_years": float(self.window_), "shrinkage": float(self.shrinkage_),
                "min_t": float(self.min_t_), "moving_components": int(np.count_nonzero(self.slope_))}

    def _fit_levels(self, pairs) -> None:
        """The level and anchor age of every training photo's window, one row per distinct window."""
        ds = pairs.dataset
        levels, anchors, level_of, photos = [], [], [], []
        for seq in pairs.sequences():
            a = ds.ages[seq].astype(np.float64)
            lo, hi = box_windows(a, a, float(self.window_) * DAYS_PER_YEAR)
            spans, inverse = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
            sums = _padded_cumsum(ds.latents_flat[seq].astype(np.float64))
            ages = _padded_cumsum(a)
            n = (spans[:, 1] - spans[:, 0]).astype(np.float64)
            level_of.append(sum(len(x) for x in levels) + inverse.ravel())
            levels.append((sums[spans[:, 1]] - sums[spans[:, 0]]) / n[:, None])
            anchors.append((ages[spans[:, 1]] - ages[spans[:, 0]]) / n)
            photos.append(seq)
        photos = np.concatenate(photos)
        self.levels_ = np.concatenate(levels).astype(np.float32)  # [L, D]
        self.level_ages_ = np.concatenate(anchors)  # [L] days
        self.level_of_ = np.concatenate(level_of).astype(np.int64)  # [P] training photo -> level
        self.photo_ages_ = ds.ages[photos].astype(np.int64)  # [P]
        self.fingerprints_ = np.array([fingerprint(x) for x in ds.latents_flat[photos]], dtype=np.uint64)
        self._index = None

    def _set_state(self, arrays):
        super()._set_state(arrays)
        self._index = None

    def _check_state(self):
        dim = int(np.prod(self.latent_shape_))
        n_photos, n_levels = np.asarray(self.fingerprints_).size, np.asarray(self.levels_).shape[0]
        shape = tuple(len(v) for v in self._candidates())  # [windows, min_t, shrinkages]
        return next((p for p in (
            check_array(self, "slope_", (dim,)), check_array(self, "tstat_", (dim,), finite=False),
            check_array(self, "window_", ()), check_array(self, "min_t_", ()), check_array(self, "shrinkage_", ()),
            check_array(self, "cv_scores_", shape, finite=False), check_array(self, "levels_", (None, dim)),
            check_array(self, "level_ages_", (n_levels,)), check_array(self, "level_of_", (n_photos,)),
            check_array(self, "level_of_", (n_photos,)), self._bad_levels(n_levels),
            check_array(self, "photo_ages_", (n_photos,)),
            check_array(self, "fingerprints_", (n_photos,)),
        ) if p), None)

    def _bad_levels(self, n_levels: int) -> str | None:
        arr = np.asarray(self.level_of_)
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() >= n_levels)):
            return f"array level_of_ is not a list of level indices below {n_levels}"
        return None

    def _level(self, start: np.ndarray, start_age: float) -> tuple[np.ndarray, float]:
        """The start's level and anchor age: its training window's, or its own for an unseen latent."""
        if getattr(self, "_index", None) is None:
            self._index = {}
            for row, fp in enumerate(np.asarray(self.fingerprints_).tolist()):
                self._index.setdefault(fp, []).append(row)
        rows = self._index.get(int(fingerprint(start)), [])
        if not rows:
            return start.astype(np.float64), start_age
        row = min(rows, key=lambda r: abs(float(self.photo_ages_[r]) - start_age))
        g = int(self.level_of_[row])
        return self.levels_[g].astype(np.float64), float(self.level_ages_[g])

    def _predict_flat(self, start, start_age, target_ages):
        level, anchor = self._level(start, start_age)
        velocity = float(self.shrinkage_) * np.asarray(self.slope_, dtype=np.float64)
        return level[None, :] + (target_ages - anchor)[:, None] * velocity[None, :]
