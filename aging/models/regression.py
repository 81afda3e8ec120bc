"""Linear regressions from a start photo to a later one: ``direct``, ``offset`` and ``ridge``.

All three regress on the features ``z = [start latent (input components), start age, target
age]`` with an (unpenalised) intercept, as the study did with scikit-learn's
``LinearRegression``: ``direct`` predicts the target latent, ``offset`` and ``ridge`` predict
the offset ``target - start`` on ``n`` selected components (the others keep the start value).

The fit never builds the pair-by-feature matrix. Pairs are grouped by start and target photo:
with ``M[u, t]`` the number of pairs from start ``u`` to target ``t``, every sufficient statistic
(``sum z z^T``, ``sum z y^T``, ``sum y.y``) is a product of small per-subject count matrices with
the photo latents. The start latents span at most ``U`` dimensions (``U`` unique start photos),
so when ``U`` is smaller than the number of input components the latent part of ``z`` is
expressed in the principal coordinates of the start latents: the same least-squares problem,
and the same minimum-norm solution, in ``U + 2`` unknowns instead of ``D + 2``. This fits
``offset`` on all 9216 components of 3 x 600 photos and their 540 000 ``all`` pairs in seconds.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from aging.models.base import AgeModel, ModelError, Param, check_array, check_indices, register
from aging.models.components import SELECTIONS, select_components

DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-3, 5, 17))


@dataclass
class PairStats:
    """Raw (uncentred) sufficient statistics of a pair regression. Additive over pair subsets."""

    zz: np.ndarray  # [F, F] sum z z^T (F = r + 2 features, no intercept column)
    zy: np.ndarray  # [F, Dout] sum z y^T
    z: np.ndarray  # [F] sum z
    y: np.ndarray  # [Dout] sum y
    yy: float  # sum ||y||^2
    n: int  # number of pairs

    def __add__(self, other: "PairStats") -> "PairStats":
        return PairStats(self.zz + other.zz, self.zy + other.zy, self.z + other.z,
                         self.y + other.y, self.yy + other.yy, self.n + other.n)

    def __sub__(self, other: "PairStats") -> "PairStats":
        return PairStats(self.zz - other.zz, self.zy - other.zy, self.z - other.z,
                         self.y - other.y, self.yy - other.yy, self.n - other.n)


class _Basis:
    """Map input latents to regression features: ``p = (x[in] - mu) @ V`` when ``project``, else
    ``p = x[in] - mu`` (identity).

    With fewer unique start photos ``U`` than input components the features are the principal
    coordinates of the centred start latents: ``V [Din, r]`` with orthonormal columns, ``r`` their
    rank. ``r`` can be 0: one start photo (the study's one subject with ``first`` pairs), or start
    photos with identical latents; the regression then has only the two age features.
    """

    def __init__(self, latents_in: np.ndarray, tol: float = 1e-10):
        # latents_in: [U, Din] float64, the unique start latents restricted to the input components
        self.mu = latents_in.mean(axis=0)
        xc = latents_in - self.mu
        n_starts, d_in = xc.shape
        self.project = n_starts < d_in
        if self.project:
            gram = xc @ xc.T  # [U, U]
            evals, evecs = np.linalg.eigh(gram)
            # relative to the largest eigenvalue, and never below rounding noise of the latents'
            # size (the mean of identical latents is not exactly each of them)
            floor = 1e-12 * float(np.sum(latents_in**2)) + 1e-300
            keep = evals > tol * max(float(evals.max()), floor)
            evals, evecs = evals[keep], evecs[:, keep]
            self.V = (xc.T @ evecs) / np.sqrt(evals)  # [Din, r], orthonormal columns, r >= 0
        else:
            self.V = np.zeros((0, 0))

    def transform(self, x_in: np.ndarray) -> np.ndarray:
        xc = x_in - self.mu
        return xc @ self.V if self.project else xc

    @property
    def rank(self) -> int:
        return self.V.shape[1] if self.project else len(self.mu)


def pair_statistics(pairs, pair_index, basis_features: np.ndarray, start_rows: np.ndarray,
                    out_comps: np.ndarray, *, offset: bool, age_mean: float, age_scale: float) -> PairStats:
    """Sufficient statistics over ``pair_index`` (indices into ``pairs``).

    ``basis_features [U, r]`` holds the transformed latent features of the unique start photos,
    ``start_rows[g]`` the row of global photo ``g`` in it (-1 when ``g`` is never a start).
    """
    ds = pairs.dataset
    s_all, t_all = pairs.start[pair_index], pairs.target[pair_index]
    a = (ds.ages.astype(np.float64) - age_mean) / age_scale  # [N] standardised ages
    r = basis_features.shape[1]
    n_out = len(out_comps)
    zz = np.zeros((r + 2, r + 2))
    zy = np.zeros((r + 2, n_out))
    zsum = np.zeros(r + 2)
    ysum = np.zeros(n_out)
    yy = 0.0
    subj = ds.subject_of[s_all]
    for k in np.unique(subj):
        sel = subj == k
        s, t = s_all[sel], t_all[sel]
        us, s_inv = np.unique(s, return_inverse=True)
        ut, t_inv = np.unique(t, return_inverse=True)
        counts = np.zeros((len(us), len(ut)))  # M[u, t]
        np.add.at(counts, (s_inv, t_inv), 1.0)
        c = counts.sum(axis=1)  # pairs per start
        rt = counts.sum(axis=0)  # pairs per target
        P = basis_features[start_rows[us]]  # [Us, r]
        a_u, a_t = a[us], a[ut]
        Ma = counts @ a_t  # [Us] sum of target ages per start
        Y_t = ds.latents_flat[np.ix_(ut, out_comps)].astype(np.float64)  # [Ut, Dout]
        MY = counts @ Y_t  # [Us, Dout]
        cP = P * c[:, None]
        # -- sum z z^T, z = [p, a_s, a_t]
        zz[:r, :r] += P.T @ cP
        zz[:r, r] += cP.T @ a_u
        zz[:r, r + 1] += P.T @ Ma
        zz[r, r] += c @ a_u**2
        zz[r, r + 1] += a_u @ Ma
        zz[r + 1, r + 1] += rt @ a_t**2
        zsum[:r] += cP.sum(axis=0)
        zsum[r] += c @ a_u
        zsum[r + 1] += rt @ a_t
        # -- sum z y^T with y = target latent (minus start latent for offsets)
        zy[:r] += P.T @ MY
        zy[r] += a_u @ MY
        zy[r + 1] += (rt * a_t) @ Y_t
        ysum += rt @ Y_t
        yy += float(rt @ (Y_t**2).sum(axis=1))
        if offset:
            Y_u = ds.latents_flat[np.ix_(us, out_comps)].astype(np.float64)  # [Us, Dout]
            zy[:r] -= cP.T @ Y_u
            zy[r] -= (c * a_u) @ Y_u
            zy[r + 1] -= Ma @ Y_u
            ysum -= c @ Y_u
            yy += float(c @ (Y_u**2).sum(axis=1)) - 2.0 * float((Y_u * MY).sum())
    zz = np.triu(zz) + np.triu(zz, 1).T
    return PairStats(zz, zy, zsum, ysum, yy, int(len(s_all)))


def solve(stats: PairStats, alpha: float = 0.0, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Least squares with an unpenalised intercept: ``(coef [F, Dout], intercept [Dout])``.

    ``alpha = 0`` gives the minimum-norm solution (scikit-learn's ``LinearRegression``);
    ``alpha > 0`` ridge regression.
    """
    n = max(stats.n, 1)
    mz, my = stats.z / n, stats.y / n
    gc = stats.zz - n * np.outer(mz, mz)  # centred Gram
    bc = stats.zy - n * np.outer(mz, my)
    evals, evecs = np.linalg.eigh(gc)
    if alpha > 0:
        inv = 1.0 / (np.maximum(evals, 0.0) + alpha)
    else:
        keep = evals > tol * max(evals.max(), 1e-300)
        inv = np.where(keep, 1.0 / np.where(keep, evals, 1.0), 0.0)
    coef = evecs @ (inv[:, None] * (evecs.T @ bc))
    intercept = my - mz @ coef
    return coef, intercept


def sse(stats: PairStats, coef: np.ndarray, intercept: np.ndarray) -> float:
    """Sum of squared residuals of ``(coef, intercept)`` on the pairs behind ``stats``."""
    quad = float(np.sum(coef * (stats.zz @ coef)))
    lin = float(np.sum(coef * stats.zy))
    cross = float(stats.z @ coef @ intercept)
    return (stats.yy - 2.0 * lin - 2.0 * float(intercept @ stats.y) + quad
            + 2.0 * cross + stats.n * float(intercept @ intercept))


class _PairRegression(AgeModel):
    """Shared fit/predict of the linear pair regressions."""

    _state_arrays = ("in_comps_", "out_comps_", "mu_in_", "project_", "basis_", "coef_", "intercept_", "ages_")
    _offset = True

    @abc.abstractmethod
    def _components(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        """(input components, output components) as sorted flat indices."""

    def _alpha(self, pairs, stats_fn) -> tuple[float, PairStats | None]:
        """The penalty, and the statistics of all pairs when computing it produced them."""
        return 0.0, None

    def fit(self, pairs, *, progress=False):
        self._begin_fit(pairs)
        ds = pairs.dataset
        in_comps, out_comps = self._components(pairs)
        starts = np.unique(pairs.start)
        basis = _Basis(ds.latents_flat[np.ix_(starts, in_comps)].astype(np.float64))
        feats = basis.transform(ds.latents_flat[np.ix_(starts, in_comps)].astype(np.float64))  # [U, r]
        rows = np.full(ds.num_photos, -1)
        rows[starts] = np.arange(len(starts))
        seen = np.concatenate([pairs.start, pairs.target])
        age_mean = float(ds.ages[seen].mean())
        age_scale = float(max(ds.ages[seen].std(), 1.0))

        def stats_fn(index):
            return pair_statistics(pairs, index, feats, rows, out_comps, offset=self._offset,
                                   age_mean=age_mean, age_scale=age_scale)

        alpha, total = self._alpha(pairs, stats_fn)
        coef, intercept = solve(total if total is not None else stats_fn(np.arange(len(pairs))), alpha)
        self.in_comps_ = in_comps.astype(np.int64)
        self.out_comps_ = out_comps.astype(np.int64)
        self.mu_in_ = basis.mu.astype(np.float32)
        self.project_ = np.bool_(basis.project)  # False: the features are the centred inputs
        self.basis_ = basis.V.astype(np.float32)  # [Din, r] when projecting, else [0, 0]
        self.coef_ = coef.astype(np.float32)  # [r + 2, Dout]
        self.intercept_ = intercept.astype(np.float32)  # [Dout]
        self.ages_ = np.array([age_mean, age_scale])
        return self

    @classmethod
    def _upgrade_state(cls, arrays):
        # saves before ``project_`` existed: an identity basis was stored as [0, 0], a projection
        # (rank >= 0) as [Din, r]
        if "project_" not in arrays and "basis_" in arrays and arrays["basis_"].ndim == 2:
            arrays = {**arrays, "project_": np.bool_(arrays["basis_"].shape[0] > 0)}
        return arrays

    def _check_state(self):
        dim = int(np.prod(self.latent_shape_))
        self.project_ = np.bool_(np.asarray(self.project_).reshape(()))
        n_in, n_out = np.asarray(self.in_comps_).size, np.asarray(self.out_comps_).size
        rank = np.asarray(self.basis_).shape[-1] if self.project_ else n_in
        problems = [
            check_indices(self, "in_comps_", dim), check_indices(self, "out_comps_", dim),
            check_array(self, "mu_in_", (n_in,)),
            check_array(self, "basis_", (n_in, None) if self.project_ else (0, 0)),
            check_array(self, "coef_", (rank + 2, n_out)), check_array(self, "intercept_", (n_out,)),
            check_array(self, "ages_", (2,)),
        ]
        if not any(problems) and not self.ages_[1] > 0:
            problems.append("array ages_ has a non-positive age scale")
        return next((p for p in problems if p), None)

    def _predict_flat(self, start, start_age, target_ages):
        x = start[self.in_comps_] - self.mu_in_
        p = x @ self.basis_ if self.project_ else x  # [r]
        r = len(p)
        a_s = (start_age - self.ages_[0]) / self.ages_[1]
        a_t = ((target_ages - self.ages_[0]) / self.ages_[1]).astype(np.float32)  # [T]
        base = p @ self.coef_[:r] + np.float32(a_s) * self.coef_[r] + self.intercept_  # [Dout]
        y = a_t[:, None] * self.coef_[r + 1][None, :]  # [T, Dout]
        y += base[None, :]
        if len(self.out_comps_) == len(start):  # every component: no scatter needed
            if self._offset:
                y += start[None, :]
            return y
        out = np.repeat(start[None, :], len(target_ages), axis=0)
        if self._offset:
            out[:, self.out_comps_] += y
        else:
            out[:, self.out_comps_] = y
        return out


@register
class DirectRegression(_PairRegression):
    """``direct``: least squares from [start latent, start age, target age] to the target latent.

    Parameters
    ----------
    (none)
    """

    name = "direct"
    _offset = False

    def __init__(self):
        pass

    def _components(self, pairs):
        every = np.arange(pairs.dataset.dim)
        return every, every


@register
class OffsetRegression(_PairRegression):
    """``offset``: least squares for the offset (target - start) on ``dims`` selected components.

    Parameters
    ----------
    select : {"first", "linear", "norm"}
        How components are chosen (see :mod:`aging.models.components`).
    dims : int or None
        Number of components; ``None`` means all of them.
    inputs : {"selected", "all"}
        Start-latent components used as regressors: the selected ones, or every component.
    """

    name = "offset"
    _params = {
        "select": Param("choice", choices=SELECTIONS + ("all",), none=True),
        "dims": Param("int", low=1, none=True),
        "inputs": Param("choice", choices=("selected", "all")),
    }

    def __init__(self, select="linear", dims=None, inputs="selected"):
        self.select = select
        self.dims = dims
        self.inputs = inputs

    def _components(self, pairs):
        try:
            out = select_components(pairs, self.select, self.dims)
        except ValueError as exc:
            raise ModelError(f"model {self.name}: {exc}") from None
        return (out if self.inputs == "selected" else np.arange(pairs.dataset.dim)), out


@register
class RidgeRegression(OffsetRegression):
    """``ridge``: the offset regression with an L2 penalty chosen by k-fold cross-validation.

    Parameters
    ----------
    select, dims, inputs : as for ``offset``
    alphas : tuple of float
        Candidate penalties (on standardised ages and the latent coefficients).
    cv : int
        Number of folds (pairs assigned at random, seeded by ``random_state``).
    random_state : int
    """

    name = "ridge"
    _state_arrays = _PairRegression._state_arrays + ("alpha_", "cv_scores_")
    _params = {
        **OffsetRegression._params,
        "alphas": Param("floats", low=0.0),
        "cv": Param("int", low=2),
        "random_state": Param("int", low=0),
    }

    def __init__(self, select="linear", dims=None, inputs="selected", alphas=DEFAULT_ALPHAS, cv=5,
                 random_state=0):
        super().__init__(select=select, dims=dims, inputs=inputs)
        self.alphas = alphas
        self.cv = cv
        self.random_state = random_state

    def _check_state(self):
        return super()._check_state() or check_array(self, "alpha_", ()) or check_array(self, "cv_scores_", (None,))

    def chosen(self) -> dict:
        """The cross-validated ridge penalty."""
        self.check_fitted()
        return {"alpha": float(self.alpha_)}

    def _alpha(self, pairs, stats_fn):
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))  # [A]
        n_folds = int(min(int(self.cv), len(pairs)))
        if n_folds < 2:
            raise ModelError(f"model ridge: cross-validation needs at least 2 training pairs, got {len(pairs)}")
        rng = np.random.default_rng(int(self.random_state))
        fold_of = rng.permutation(len(pairs)) % n_folds
        fold_stats = [stats_fn(np.nonzero(fold_of == f)[0]) for f in range(n_folds)]
        total = fold_stats[0]
        for fs in fold_stats[1:]:
            total = total + fs
        scores = np.zeros(len(alphas))
        for fs in fold_stats:
            train = total - fs
            for i, alpha in enumerate(alphas):
                coef, intercept = solve(train, alpha)
                scores[i] += sse(fs, coef, intercept)
        scores /= total.n * max(len(fold_stats[0].y), 1)
        self.cv_scores_ = scores
        self.alpha_ = np.float64(alphas[int(np.argmin(scores))])
        return float(self.alpha_), total
