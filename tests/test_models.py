import numpy as np
import pytest

from aging.latents import EvalProtocol, make_pairs, make_splits
from aging.models import REGISTRY, ModelError, load_model, make_model, select_components, step_variances
from aging.models.regression import OffsetRegression, pair_statistics, solve
from aging.scoring import fit_and_score, pair_errors
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


def test_norm_selection_is_the_studys_l2_rule():
    # the study's RegressionTrials: sklearn's normalize on the components x steps matrix, then the
    # variance of each unit vector; the smallest variances are the "normalised most linear"
    from sklearn.preprocessing import normalize

    from aging.models.components import photo_steps

    ds, _ = generate(small_config(shape=(4, 16), photos=30, subjects=2))
    pairs = make_pairs(ds, "first")
    steps = photo_steps(pairs)  # [S, D]
    expected_var = normalize(steps.T, norm="l2", axis=1).var(axis=1)
    np.testing.assert_allclose(step_variances(pairs, normalise=True), expected_var, rtol=1e-10, atol=1e-15)
    n = 20
    expected = np.sort(np.argsort(expected_var, kind="stable")[:n])
    np.testing.assert_array_equal(select_components(pairs, "norm", n), expected)
    # the L2 rule is blind to amplitude: scaling one component's latents leaves the ranking as it was
    ds.latents_flat[:, 3] *= 50.0
    np.testing.assert_array_equal(select_components(make_pairs(ds, "first"), "norm", n), expected)


def test_norm_selection_finds_planted_components_better_than_chance():
    ds, truth = generate(small_config(shape=(8, 64), photos=80))
    planted = set(truth["age_components"].tolist())
    chosen = select_components(make_pairs(ds, "first"), "norm", len(planted))
    recall = len(planted & set(chosen.tolist())) / len(planted)
    assert recall > 0.5, recall  # chance: len(planted) / dim = 0.1


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
    # no curvature and one aging rate: the clean latents move along truth["direction"] at a
    # constant speed, the same for every subject
    ds, truth = generate(small_config(shape=(8, 64), photos=80, noise=0.05, rate_spread=0.0, curvature=0.0))
    model = make_model("direction").fit(make_pairs(ds, "all"))
    d = truth["direction"].reshape(-1).astype(np.float64)
    cos = float(model.direction_ @ d)
    assert cos >= 0.95, cos
    # the planted speed along d (latent units per day), read off the noise-free latents
    s = ds.subjects[0]
    clean = s.clean.reshape(len(s), -1).astype(np.float64)
    planted = float((clean[-1] - clean[0]) @ d) / float(s.ages[-1] - s.ages[0])
    assert planted > 0
    # the fitted scale moves a face by the planted trend (within a few percent)
    assert abs(float(model.scale_) * cos - planted) < 0.05 * planted, (float(model.scale_), planted)
    # and a prediction from the first photo to the last lands near the clean latent of that age
    k = len(s) - 1
    pred = model.predict(s.clean[0], s.ages[0], s.ages[k])[0].reshape(-1)
    moved = np.linalg.norm(clean[k] - clean[0])
    assert np.linalg.norm(pred - clean[k]) < 0.2 * moved


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
    res = fit_and_score(ds, lambda: make_model(name, **params), EvalProtocol(pairs=pairs, split="future", n_pairs=3000))
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


def _raw_statistics(pairs, index, comps):
    """pair_statistics of the offset regression on ``comps`` with the raw (untransformed) start
    latents as features and ages standardised around 9000 days (scale 400), as _materialise does."""
    ds = pairs.dataset
    starts = np.unique(pairs.start)
    feats = ds.latents_flat[np.ix_(starts, comps)].astype(np.float64)
    rows = np.full(ds.num_photos, -1)
    rows[starts] = np.arange(len(starts))
    return pair_statistics(pairs, index, feats, rows, comps, offset=True, age_mean=9000.0, age_scale=400.0)


def test_sufficient_statistics_match_brute_force(small_ds):
    pairs = make_pairs(small_ds, "random", n_pairs=700, seed=2)
    comps = np.arange(0, small_ds.dim, 3)
    st = _raw_statistics(pairs, np.arange(len(pairs)), comps)
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


# ---------------------------------------------------------------------------------------------
# ridge: the residual sums and the cross-validation scores, checked against direct computations
# ---------------------------------------------------------------------------------------------


def test_sse_is_the_residual_sum_of_squares(small_ds):
    from aging.models.regression import sse

    pairs = make_pairs(small_ds, "random", n_pairs=500, seed=4)
    comps = np.arange(0, small_ds.dim, 5)
    index = np.arange(0, len(pairs), 2)  # a subset, as a cross-validation fold
    st = _raw_statistics(pairs, index, comps)
    X, Y = _materialise(pairs.subset(index), comps, comps, True, 9000.0, 400.0)
    rng = np.random.default_rng(0)
    for _ in range(3):  # arbitrary coefficients, not only the least-squares ones
        coef = rng.standard_normal((X.shape[1], Y.shape[1])) * 0.1
        intercept = rng.standard_normal(Y.shape[1])
        direct = float(((X @ coef + intercept - Y) ** 2).sum())
        np.testing.assert_allclose(sse(st, coef, intercept), direct, rtol=1e-8)
    coef, intercept = solve(st, alpha=2.0)
    np.testing.assert_allclose(sse(st, coef, intercept), float(((X @ coef + intercept - Y) ** 2).sum()), rtol=1e-8)


def test_ridge_cv_scores_equal_a_brute_force_k_fold():
    from sklearn.linear_model import Ridge

    ds, _ = generate(small_config(shape=(2, 16), photos=30))
    pairs = make_pairs(ds, "all")
    alphas, cv, seed = (1e-2, 1.0, 30.0, 1e4), 3, 7
    model = make_model("ridge", select="first", dims=12, alphas=alphas, cv=cv, random_state=seed).fit(pairs)
    X, Y = _materialise(pairs, model.in_comps_, model.out_comps_, True, *model.ages_)
    fold_of = np.random.default_rng(seed).permutation(len(pairs)) % cv  # the model's fold assignment
    expect = np.zeros(len(alphas))
    for i, alpha in enumerate(alphas):
        for f in range(cv):
            test = fold_of == f
            ref = Ridge(alpha=alpha).fit(X[~test], Y[~test])
            expect[i] += float(((ref.predict(X[test]) - Y[test]) ** 2).sum())
    expect /= len(pairs) * Y.shape[1]
    np.testing.assert_allclose(model.cv_scores_, expect, rtol=1e-5)
    assert len(set(np.round(expect / expect.min(), 6))) > 1  # the penalties really differ in score
    assert model.alpha_ == alphas[int(np.argmin(expect))]


# ---------------------------------------------------------------------------------------------
# the study's own protocol: one subject, `first` pairs, internal split
# ---------------------------------------------------------------------------------------------

ONE_SUBJECT_PARAMS = {"offset": dict(select="first", dims=32), "ridge": dict(select="first", dims=32, cv=3),
                      "interp": dict(select="first", dims=32), "mlp": dict(hidden=8, epochs=3, dims=8)}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_one_subject_first_pairs_internal_split(name, tmp_path):
    ds, _ = generate(small_config(subjects=1, photos=30, shape=(4, 16)))
    (fold,) = make_splits(ds, "internal", "first")
    assert len(np.unique(fold.train.start)) == 1  # one start photo: a rank-0 latent basis
    model = make_model(name, **ONE_SUBJECT_PARAMS.get(name, {})).fit(fold.train)
    s = ds.subjects[0]
    pred = model.predict(s.latents[0], s.ages[0], ds.ages[fold.test.target])
    assert pred.shape == (len(fold.test),) + ds.latent_shape and np.all(np.isfinite(pred))
    # the one start latent is all a regression may use: it learns the mean offset per age, so it
    # beats predicting the start latent on the training pairs
    errors = pair_errors(model, fold.train)
    if name in ("direct", "offset", "ridge"):
        assert errors.model.mean() < errors.refs["start"].mean()
        assert model.project_ and model.basis_.shape == (len(model.in_comps_), 0)
    model.save(tmp_path / name)
    again = load_model(tmp_path / name)
    np.testing.assert_array_equal(again.predict(s.latents[0], s.ages[0], s.ages[5:]),
                                  model.predict(s.latents[0], s.ages[0], s.ages[5:]))


def test_identity_and_projection_bases_round_trip_and_old_saves_load(small_ds, tmp_path):
    from aging.io import read_npz, save_npz

    s = small_ds.subjects[1]
    # 3 start photos < 40 inputs: projection (rank 2, the centred starts); all pairs on few
    # components: identity
    proj = make_model("offset", select="first", dims=40).fit(make_pairs(small_ds, "first"))
    ident = make_model("offset", select="first", dims=4).fit(make_pairs(small_ds, "all"))
    assert proj.project_ and proj.basis_.shape == (40, 2)
    assert not ident.project_ and ident.basis_.shape == (0, 0)
    for label, model in (("proj", proj), ("ident", ident)):
        model.save(tmp_path / label)
        want = model.predict(s.latents[3], s.ages[3], s.ages[[9, 30]])
        again = load_model(tmp_path / label)
        np.testing.assert_array_equal(again.predict(s.latents[3], s.ages[3], s.ages[[9, 30]]), want)
        # a save from before `project_` existed: inferred from the stored basis shape
        arrays = read_npz(tmp_path / label / "model.npz")
        del arrays["project_"]
        save_npz(tmp_path / label / "model.npz", **arrays)
        old = load_model(tmp_path / label)
        assert bool(old.project_) == bool(model.project_)
        np.testing.assert_array_equal(old.predict(s.latents[3], s.ages[3], s.ages[[9, 30]]), want)


def test_identical_training_latents_are_one_clear_error():
    from aging.latents import LatentDataset, Subject

    subjects = [Subject(f"s{k}", np.arange(10, 60, 10), np.ones((5, 2, 3), np.float32)) for k in range(2)]
    ds = LatentDataset(subjects, root=None)
    for name in sorted(REGISTRY):
        with pytest.raises(ModelError, match="all 10 training latents are identical"):
            make_model(name, **ONE_SUBJECT_PARAMS.get(name, {})).fit(make_pairs(ds, "all"))
    # start latents that are all equal, targets that differ: a rank-0 basis, not a crash
    rng = np.random.default_rng(0)
    lat = rng.standard_normal((2, 6, 2, 3)).astype(np.float32)
    lat[:, 0] = 1.0
    ds = LatentDataset([Subject(f"s{k}", np.arange(10, 70, 10), lat[k]) for k in range(2)])
    model = make_model("offset", select="first", dims=6).fit(make_pairs(ds, "first"))
    assert model.project_ and model.basis_.shape[1] == 0
    assert np.all(np.isfinite(model.predict(lat[0, 0], 10, [20, 60])))


# ---------------------------------------------------------------------------------------------
# hyper-parameter values: checked by make_model and fit, one line naming the parameter
# ---------------------------------------------------------------------------------------------


def _bad_values(spec):
    """Values ``spec`` must refuse, and one it must accept."""
    if spec.kind == "choice":
        return ["bogus", 3, ""] + ([] if spec.none else [None]), spec.choices[0]
    if spec.kind == "path":
        return [3, ""] + ([] if spec.none else [None]), "d.npy"
    bad = ["abc", True, float("nan"), float("inf")] + ([] if spec.none else [None])
    if spec.kind == "int":
        bad.append(2.5)
    if spec.kind == "floats":
        bad += [[], ["abc"], [1.0, float("nan")]]
    if spec.low is not None:
        bad.append(spec.low if spec.low_open else spec.low - 1)
    if spec.high is not None:
        bad.append(spec.high if spec.high_open else spec.high + 1)
    good = spec.low + 1 if spec.low is not None else 1
    return bad, (good if spec.high is None or good < spec.high else (spec.low + spec.high) / 2)


CASES = [(name, key) for name in sorted(REGISTRY) for key in REGISTRY[name].param_names()]


@pytest.mark.parametrize("name,key", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_make_model_refuses_bad_parameter_values(name, key):
    cls = REGISTRY[name]
    if key == "device":
        bad, good = ["tpu", "cuda:x", 0, None], "cpu"
    else:
        assert key in cls._params, f"{name}: parameter {key} has no declared values"
        bad, good = _bad_values(cls._params[key])
    make_model(name, **{key: good})
    for value in bad:
        with pytest.raises(ModelError) as info:
            make_model(name, **{key: value})
        msg = str(info.value)
        assert "\n" not in msg and f"parameter {key}" in msg and f"model {name}" in msg, msg
        assert "must be" in msg  # and what it accepts
        # scikit-learn's convention: the constructor stores as given, fit validates
        model = cls(**{key: value})
        assert getattr(model, key) is value
        with pytest.raises(ModelError, match=f"parameter {key}"):
            model.fit(make_pairs(_tiny_ds(), "first"))


def _tiny_ds():
    from aging.latents import LatentDataset, Subject

    rng = np.random.default_rng(1)
    return LatentDataset([Subject(f"s{k}", np.arange(100, 600, 100), rng.standard_normal((5, 6)).astype(np.float32))
                          for k in range(2)])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_default_parameters_are_valid(name):
    make_model(name).validate_params()
    assert set(REGISTRY[name]._params) <= set(REGISTRY[name].param_names())


def test_messages_name_the_parameter_and_the_accepted_values():
    with pytest.raises(ModelError, match=r"^model offset: parameter select must be one of first, linear, norm, all "
                                         r"or None, got 'bogus'$"):
        make_model("offset", select="bogus")
    with pytest.raises(ModelError, match=r"^model offset: parameter dims must be a whole number >= 1 or None, "
                                         r"got 2\.5$"):
        make_model("offset", dims=2.5)
    with pytest.raises(ModelError, match=r"^model mlp: parameter hidden must be a whole number >= 1, got 'abc'$"):
        make_model("mlp", hidden="abc")
    with pytest.raises(ModelError, match=r"^model offset: parameter dims must be between 1 and 6 .*got 7$"):
        make_model("offset", select="first", dims=7).fit(make_pairs(_tiny_ds(), "first"))
    # numpy scalars are numbers like any other
    make_model("ridge", dims=np.int64(3), alphas=np.array([0.5, 2.0]), cv=np.int32(3))


# ---------------------------------------------------------------------------------------------
# damaged saved models: one line naming the file
# ---------------------------------------------------------------------------------------------


def _saved(tmp_path, name="offset", **kw):
    params = {**ONE_SUBJECT_PARAMS.get(name, {}), **kw}
    if name in ("offset", "ridge", "interp"):
        params["dims"] = 5
    if name == "mlp":
        params["dims"] = 5
    model = make_model(name, **params).fit(make_pairs(_tiny_ds(), "all"))
    return model.save(tmp_path / name)


def _damage_npz(path, fn):
    from aging.io import read_npz, save_npz

    arrays = read_npz(path)
    fn(arrays)
    save_npz(path, **arrays)


DAMAGE = {
    "json-garbage": ("model.json", lambda d: (d / "model.json").write_text("{not json")),
    "json-list": ("model.json", lambda d: (d / "model.json").write_text("[1, 2]")),
    "json-bad-param": ("model.json", lambda d: (d / "model.json").write_text(
        (d / "model.json").read_text().replace('"select": "first"', '"select": "bogus"'))),
    "json-unknown-param": ("model.json", lambda d: (d / "model.json").write_text(
        (d / "model.json").read_text().replace('"inputs"', '"depth"'))),
    "json-bad-shape": ("model.json", lambda d: (d / "model.json").write_text(
        (d / "model.json").read_text().replace('"latent_shape": [\n    6\n  ]', '"latent_shape": "six"'))),
    "npz-missing": ("model.npz", lambda d: (d / "model.npz").unlink()),
    "npz-truncated": ("model.npz", lambda d: (d / "model.npz").write_bytes((d / "model.npz").read_bytes()[:200])),
    "npz-not-zip": ("model.npz", lambda d: (d / "model.npz").write_bytes(b"hello")),
    "npz-missing-array": ("model.npz", lambda d: _damage_npz(d / "model.npz", lambda a: a.pop("coef_"))),
    "npz-wrong-shape": ("model.npz", lambda d: _damage_npz(d / "model.npz",
                                                           lambda a: a.update(coef_=a["coef_"][:, :2]))),
    "npz-bad-index": ("model.npz", lambda d: _damage_npz(d / "model.npz",
                                                         lambda a: a.update(out_comps_=a["out_comps_"] + 100))),
    "npz-nan": ("model.npz", lambda d: _damage_npz(d / "model.npz",
                                                   lambda a: a.update(intercept_=a["intercept_"] * np.nan))),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_load_model_refuses_damaged_files_in_one_line(tmp_path, case):
    folder = _saved(tmp_path, "offset", select="first")
    assert load_model(folder).predict(np.zeros(6), 100, [200]).shape == (1, 6)
    fname, damage = DAMAGE[case]
    damage(folder)
    with pytest.raises(ModelError) as info:
        load_model(folder)
    msg = str(info.value)
    assert "\n" not in msg and str(folder / fname) in msg, msg


@pytest.mark.parametrize("name", ["mlp", "ridge", "interp", "direction"])
def test_load_model_checks_every_model_arrays(tmp_path, name):
    folder = _saved(tmp_path, name)
    key = {"mlp": "net.0.weight", "ridge": "cv_scores_", "interp": "velocity_", "direction": "direction_"}[name]
    _damage_npz(folder / "model.npz", lambda a: a.update({key: np.zeros((2, 2, 2), np.float32)}))
    with pytest.raises(ModelError, match=f"{key}.*shape") as info:
        load_model(folder)
    assert str(folder / "model.npz") in str(info.value)
