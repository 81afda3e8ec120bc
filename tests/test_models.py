import numpy as np
import pytest

from aging.evaluate import evaluate, pair_errors
from aging.latents import make_pairs, make_splits
from aging.models import REGISTRY, ModelError, load_model, make_model, select_components
from aging.models.regression import OffsetRegression, pair_statistics, solve
from aging.synthetic import generate
from tests.conftest import small_config

FAST = {"mlp": dict(hidden=32, epochs=5, dims=32), "ridge": dict(cv=3)}


def fast_model(name, **kw):
    return make_model(name, **{**FAST.get(name, {}), **kw})


@pytest.mark.parametrize("strategy", ["first", "all", "random"])
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_fits_and_predicts_shapes(small_ds, name, strategy):
    pairs = make_pairs(small_ds, strategy, n_pairs=300, seed=0)
    model = fast_model(name).fit(pairs)
    start = small_ds.subjects[0].latents[3]
    out = model.predict(start, small_ds.subjects[0].ages[3], [9000, 9500, 10000])
    assert out.shape == (3,) + small_ds.latent_shape
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    one = model.predict(start.reshape(-1), 9000, 9500)  # flat input, scalar age
    assert one.shape == (1,) + small_ds.latent_shape


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_save_load_predicts_identically(small_ds, name, tmp_path):
    pairs = make_pairs(small_ds, "all")
    model = fast_model(name).fit(pairs)
    model.save(tmp_path / name)
    again = load_model(tmp_path / name)
    assert type(again) is type(model) and again.get_params() == model.get_params()
    for k in (0, 2):
        s = small_ds.subjects[k]
        a = model.predict(s.latents[5], s.ages[5], s.ages[5:40:7])
        b = again.predict(s.latents[5], s.ages[5], s.ages[5:40:7])
        np.testing.assert_array_equal(a, b)
    assert not (tmp_path / name / "model.pkl").exists()


def test_wrong_latent_shape_and_unfitted_model(small_ds):
    model = make_model("offset", select="first", dims=10)
    with pytest.raises(ModelError, match="not fitted"):
        model.predict(np.zeros(small_ds.latent_shape), 0, [1])
    model.fit(make_pairs(small_ds, "first"))
    with pytest.raises(ModelError, match="wrong latent shape"):
        model.predict(np.zeros((18, 512)), 0, [1])
    with pytest.raises(ModelError, match="unknown parameter 'depth'"):
        make_model("offset", depth=3)
    with pytest.raises(ModelError, match="unknown model"):
        make_model("transformer")


def test_load_refuses_foreign_files(tmp_path):
    (tmp_path / "model.json").write_text('{"format": "something-else", "model": "offset"}')
    with pytest.raises(ModelError, match="unknown model format"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="no model.json"):
        load_model(tmp_path / "missing")


def test_interp_reproduces_its_anchors(small_ds):
    s = small_ds.subjects[1]
    pairs = make_pairs(small_ds, "first", photos=small_ds.photos_of(1))
    model = make_model("interp").fit(pairs)
    out = model.predict(s.latents[0], s.ages[0], [s.ages[0], s.ages[-1]])
    np.testing.assert_allclose(out[0], s.latents[0], atol=1e-5)
    np.testing.assert_allclose(out[1], s.latents[-1], atol=1e-5)
    # with explicit anchor ages the line passes through the photos nearest to them
    m2 = make_model("interp", t1=int(s.ages[10]), t2=int(s.ages[30])).fit(pairs)
    np.testing.assert_allclose(m2.predict(s.latents[10], s.ages[10], s.ages[30])[0], s.latents[30], atol=1e-5)


def test_linear_selection_finds_the_steady_components():
    ds, truth = generate(small_config(shape=(8, 64), photos=80))
    planted = set(truth["age_components"].tolist())
    pairs = make_pairs(ds, "first")
    chosen = select_components(pairs, "linear", len(planted))
    precision = len(planted & set(chosen.tolist())) / len(chosen)
    assert precision >= 0.9, precision
    # `first` is no better than chance here
    first = select_components(pairs, "first", len(planted))
    assert len(planted & set(first.tolist())) / len(first) < 0.5


def test_offset_on_planted_components_beats_random_components():
    # a clear age trend (the study's protocol: future photos predicted from the first one)
    ds, truth = generate(small_config(shape=(8, 64), photos=80, noise=0.3, trend=2.0))
    planted = truth["age_components"]
    rng = np.random.default_rng(123)  # not the generator's seed: a different random subset
    random_comps = np.sort(rng.choice(ds.dim, size=len(planted), replace=False))
    assert len(set(planted) & set(random_comps)) < 0.3 * len(planted)
    (fold,) = make_splits(ds, "future", "first")

    class Fixed(OffsetRegression):
        """offset regression on a given component set"""

        def _components(self, pairs):
            return self.comps, self.comps

    errs = {}
    for label, comps in (("planted", planted), ("random", random_comps)):
        m = Fixed(select="first", dims=len(comps))
        m.comps = comps
        m.fit(fold.train)
        errs[label] = pair_errors(m, fold.test).model.mean()
    assert errs["planted"] < 0.9 * errs["random"], errs


def test_learned_direction_recovers_the_planted_one():
    ds, truth = generate(small_config(shape=(8, 64), photos=80, noise=0.05, rate_spread=0.0))
    model = make_model("direction").fit(make_pairs(ds, "all"))
    cos = float(model.direction_ @ truth["direction"].reshape(-1))
    assert cos >= 0.95, cos
    # the fitted scale moves a face by the planted trend: |trend| over five years
    assert model.scale_ > 0


def test_direction_from_file(small_ds, tmp_path):
    d = np.zeros(small_ds.latent_shape, np.float32)
    d[0, 0] = 2.0
    np.save(tmp_path / "d.npy", d)
    model = make_model("direction", direction=str(tmp_path / "d.npy")).fit(make_pairs(small_ds, "first"))
    out = model.predict(np.zeros(small_ds.latent_shape), 0, [0, 1000])
    assert np.count_nonzero(out[1]) == 1 and out[1][0, 0] != 0
    np.save(tmp_path / "bad.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(ModelError, match="does not match"):
        make_model("direction", direction=str(tmp_path / "bad.npy")).fit(make_pairs(small_ds, "first"))


@pytest.mark.parametrize("name", ["direct", "offset", "ridge", "mlp", "direction"])
def test_regressions_beat_the_start_baseline_on_future_split(name):
    ds, _ = generate(small_config(shape=(8, 64), photos=80, noise=0.3, seed=5))
    params = {"offset": dict(select="linear", dims=100), "ridge": dict(select="linear", dims=100, cv=3),
              "mlp": dict(hidden=64, dims=100, epochs=60, lr=0.003)}.get(name, {})
    pairs = "random" if name == "mlp" else "first"
    res = evaluate(ds, lambda: make_model(name, **params), pairs=pairs, split="future", n_pairs=3000)
    m = res.metrics
    assert m["test_mse"] < m["baselines"]["start"]["test_mse"], m
    assert m["baselines"]["truth"]["test_mse"] < m["test_mse"]  # nobody beats the noise floor


def _materialise(pairs, comps_in, comps_out, offset, age_mean, age_scale):
    ds = pairs.dataset
    L = ds.latents_flat.astype(np.float64)
    a = (ds.ages - age_mean) / age_scale
    X = np.column_stack([L[pairs.start][:, comps_in], a[pairs.start], a[pairs.target]])
    Y = L[pairs.target][:, comps_out] - (L[pairs.start][:, comps_out] if offset else 0)
    return X, Y


@pytest.mark.parametrize("strategy", ["all", "random"])
def test_structured_least_squares_equals_the_dense_solution(small_ds, strategy):
    """The pair-structure fit must give exactly what a dense least-squares fit gives."""
    from sklearn.linear_model import LinearRegression, Ridge

    pairs = make_pairs(small_ds, strategy, n_pairs=2000, seed=1)
    for name, kw in (("direct", {}), ("offset", dict(select="first", dims=40)),
                     ("ridge", dict(select="first", dims=40, alphas=(3.0,), cv=2))):
        model = make_model(name, **kw).fit(pairs)
        X, Y = _materialise(pairs, model.in_comps_, model.out_comps_, name != "direct", *model.ages_)
        ref = (Ridge(alpha=3.0) if name == "ridge" else LinearRegression()).fit(X, Y)
        s = small_ds.subjects[2]
        pred = model.predict(s.latents[4], s.ages[4], s.ages[[10, 50]]).reshape(2, -1)
        a = (np.array([s.ages[4]] * 2) - model.ages_[0]) / model.ages_[1]
        b = (s.ages[[10, 50]] - model.ages_[0]) / model.ages_[1]
        xq = np.column_stack([np.repeat(s.latents[4].reshape(1, -1)[:, model.in_comps_], 2, 0), a, b])
        yq = ref.predict(xq)
        expect = np.repeat(s.latents[4].reshape(1, -1), 2, 0).astype(np.float64)
        if name == "direct":
            expect[:, model.out_comps_] = yq
        else:
            expect[:, model.out_comps_] += yq
        np.testing.assert_allclose(pred, expect, atol=2e-4, err_msg=name)


def test_sufficient_statistics_match_brute_force(small_ds):
    pairs = make_pairs(small_ds, "random", n_pairs=700, seed=2)
    comps = np.arange(0, small_ds.dim, 3)
    starts = np.unique(pairs.start)
    feats = small_ds.latents_flat[np.ix_(starts, comps)].astype(np.float64)
    rows = np.full(small_ds.num_photos, -1)
    rows[starts] = np.arange(len(starts))
    st = pair_statistics(pairs, np.arange(len(pairs)), feats, rows, comps, offset=True, age_mean=9000.0,
                         age_scale=400.0)
    X, Y = _materialise(pairs, comps, comps, True, 9000.0, 400.0)
    np.testing.assert_allclose(st.zz, X.T @ X, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(st.zy, X.T @ Y, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(st.yy, (Y**2).sum(), rtol=1e-9)
    coef, intercept = solve(st)
    np.testing.assert_allclose(X @ coef + intercept, X @ np.linalg.lstsq(
        np.column_stack([X, np.ones(len(X))]), Y, rcond=None)[0][:-1] + np.linalg.lstsq(
        np.column_stack([X, np.ones(len(X))]), Y, rcond=None)[0][-1], atol=1e-6)


def test_ridge_picks_a_penalty_by_cross_validation(small_ds):
    pairs = make_pairs(small_ds, "all")
    m = make_model("ridge", select="first", dims=64, alphas=(1e-3, 1.0, 1e3, 1e9), cv=4).fit(pairs)
    assert m.cv_scores_.shape == (4,)
    assert m.alpha_ == (1e-3, 1.0, 1e3, 1e9)[int(np.argmin(m.cv_scores_))]
    # an enormous penalty leaves only the intercept: the mean offset, whatever the start latent
    big = make_model("ridge", select="first", dims=64, alphas=(1e12,), cv=2).fit(pairs)
    s = small_ds.subjects[0]
    d1 = big.predict(s.latents[0], s.ages[0], s.ages[20]) - s.latents[0]
    d2 = big.predict(s.latents[7], s.ages[0], s.ages[20]) - s.latents[7]
    np.testing.assert_allclose(d1, d2, atol=1e-5)
