import re

import numpy as np
import pytest

from aging.latents import LatentDataset, LatentDatasetError, load_subject, make_pairs, make_splits
from tests.conftest import write_subject


def test_load_sorts_by_age_and_accepts_latents_subfolder(tmp_path):
    write_subject(tmp_path / "ann", [300, 20, 1000])
    write_subject(tmp_path / "bob" / "latents", [5, 7])
    ds = LatentDataset.load(tmp_path)
    assert ds.names == ["ann", "bob"]
    assert ds.subjects[0].ages.tolist() == [20, 300, 1000]
    assert ds.subjects[1].ages.tolist() == [5, 7]
    assert ds.latent_shape == (2, 3)
    assert ds.latents_flat.shape == (5, 6)
    # the sorted latent really is the file of that age
    np.testing.assert_array_equal(ds.subjects[0].latents[0], np.load(tmp_path / "ann" / "20.npy"))


def test_a_folder_of_latents_is_one_subject(tmp_path):
    write_subject(tmp_path / "solo", [1, 2, 3])
    ds = LatentDataset.load(tmp_path / "solo")
    assert ds.names == ["solo"] and ds.num_photos == 3


@pytest.mark.parametrize("case", ["name", "shape", "nan", "empty", "unreadable", "missing"])
def test_bad_input_names_the_file(tmp_path, case):
    write_subject(tmp_path / "ann", [10, 20])
    bad = tmp_path / "ann"
    if case == "name":
        np.save(bad / "twenty.npy", np.zeros((2, 3), np.float32))
        expect = "twenty.npy"
    elif case == "shape":
        np.save(bad / "30.npy", np.zeros((3, 3), np.float32))
        expect = "30.npy"
    elif case == "nan":
        np.save(bad / "30.npy", np.full((2, 3), np.nan, np.float32))
        expect = "30.npy"
    elif case == "empty":
        (tmp_path / "zed").mkdir()
        expect = "zed"
    elif case == "unreadable":
        (bad / "30.npy").write_bytes(b"not a numpy file")
        expect = "30.npy"
    else:
        bad = tmp_path / "nope"
        expect = "nope"
        with pytest.raises(LatentDatasetError, match=expect):
            LatentDataset.load(bad)
        return
    with pytest.raises(LatentDatasetError, match=expect):
        LatentDataset.load(tmp_path)


def test_pairing_strategies(small_ds):
    ds = small_ds
    n = len(ds.subjects[0])
    first = make_pairs(ds, "first")
    assert len(first) == 3 * (n - 1)
    for s in range(3):
        sel = ds.subject_of[first.start] == s
        assert set(first.start[sel]) == {ds.photos_of(s)[0]}
    allp = make_pairs(ds, "all")
    assert len(allp) == 3 * n * (n - 1) // 2
    assert np.all(ds.ages[allp.target] > ds.ages[allp.start])
    assert np.all(ds.subject_of[allp.target] == ds.subject_of[allp.start])
    rnd = make_pairs(ds, "random", n_pairs=500, min_gap=100, seed=3)
    assert len(rnd) == 500
    assert np.all(ds.ages[rnd.target] - ds.ages[rnd.start] >= 100)
    assert np.all(ds.subject_of[rnd.target] == ds.subject_of[rnd.start])
    again = make_pairs(ds, "random", n_pairs=500, min_gap=100, seed=3)
    other = make_pairs(ds, "random", n_pairs=500, min_gap=100, seed=4)
    np.testing.assert_array_equal(rnd.start, again.start)
    assert not np.array_equal(rnd.start, other.start) or not np.array_equal(rnd.target, other.target)
    # every admissible pair can be drawn: with many draws the coverage is wide
    many = make_pairs(ds, "random", n_pairs=20000, min_gap=0, seed=0)
    assert len(set(zip(many.start, many.target))) > 0.6 * len(allp)


def test_internal_split_is_a_partition(small_ds):
    (fold,) = make_splits(small_ds, "internal", "all", seed=1)
    everything = make_pairs(small_ds, "all")
    tr = set(zip(fold.train.start, fold.train.target))
    te = set(zip(fold.test.start, fold.test.target))
    assert not tr & te
    assert len(tr) + len(te) == len(everything)
    assert abs(len(te) / len(everything) - 0.2) < 0.01


def test_future_split_trains_on_the_past(small_ds):
    ds = small_ds
    for pairs in ("first", "all"):
        (fold,) = make_splits(ds, "future", pairs)
        for s in range(len(ds.subjects)):
            ph = ds.photos_of(s)
            n_train = int(np.ceil(0.8 * len(ph)))
            cutoff = ds.ages[ph[n_train - 1]]
            sel_tr = ds.subject_of[fold.train.target] == s
            sel_te = ds.subject_of[fold.test.target] == s
            assert ds.ages[fold.train.target[sel_tr]].max() <= cutoff
            assert ds.ages[fold.test.target[sel_te]].min() > cutoff
            assert ds.ages[fold.test.start[sel_te]].max() <= cutoff  # starts are seen photos
        if pairs == "first":
            assert len(np.unique(fold.test.start)) == len(ds.subjects)


def test_external_split_holds_a_subject_out(small_ds):
    folds = make_splits(small_ds, "external", "all")
    assert [f.holdout for f in folds] == small_ds.names
    for k, f in enumerate(folds):
        assert k not in set(small_ds.subject_of[f.train.start])
        assert set(small_ds.subject_of[f.test.start]) == {k}
        assert set(f.test.start) == {small_ds.photos_of(k)[0]}
    (only,) = make_splits(small_ds, "external", "first", holdout="subject01")
    assert only.holdout == "subject01"
    with pytest.raises(LatentDatasetError, match="--holdout 'nobody': no such subject"):
        make_splits(small_ds, "external", "first", holdout="nobody")


# ---------------------------------------------------------------------------------------------
# reading through aging.io: temporaries ignored, strict age names, one line naming the file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("leftover", [".9061.5336qh80.npy", ".30.3f9a1c.tmp.npy", ".123.abc.tmp.npy", "30.npy.part"])
def test_temporaries_of_killed_writes_are_ignored(tmp_path, leftover):
    write_subject(tmp_path / "ann", [10, 20])
    (tmp_path / "ann" / leftover).write_bytes(b"\x93NUMPY half a file")
    ds = LatentDataset.load(tmp_path)
    assert ds.subjects[0].ages.tolist() == [10, 20]
    # a folder holding only a temporary is not a subject of latents
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / leftover).write_bytes(b"x")
    with pytest.raises(LatentDatasetError, match="bob.*empty subject"):
        LatentDataset.load(tmp_path)


@pytest.mark.parametrize("name", ["9_207.npy", "-5.npy", "+3.npy", "7.3e3.npy", " 12.npy"])
def test_ages_are_digits_only(tmp_path, name):
    write_subject(tmp_path / "ann", [10, 20])
    np.save(tmp_path / "ann" / name, np.zeros((2, 3), np.float32))
    with pytest.raises(LatentDatasetError) as info:
        LatentDataset.load(tmp_path)
    msg = str(info.value)
    assert name in msg and "age in days" in msg and "\n" not in msg


def test_a_subject_of_another_shape_names_its_file(tmp_path):
    write_subject(tmp_path / "ann", [10, 20])
    write_subject(tmp_path / "bob", [5, 7], shape=(3, 2))
    with pytest.raises(LatentDatasetError, match=r"bob/5\.npy: latent has shape \(3, 2\), expected \(2, 3\)"):
        LatentDataset.load(tmp_path)


def test_pickled_and_integer_latents(tmp_path):
    write_subject(tmp_path / "ann", [10, 20])
    np.save(tmp_path / "ann" / "30.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LatentDatasetError, match="30.npy: unreadable latent"):
        LatentDataset.load(tmp_path)


def test_duplicate_age_is_refused_naming_both_files(tmp_path):
    write_subject(tmp_path / "ann", [10, 20])
    np.save(tmp_path / "ann" / "0010.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(LatentDatasetError, match="two latents for age 10") as err:
        load_subject(tmp_path / "ann")
    assert re.search("0010.npy and 10.npy", str(err.value))


def test_in_memory_subjects_are_checked():
    from aging.latents import Subject

    lat = np.zeros((3, 4), np.float32)
    with pytest.raises(LatentDatasetError, match="strictly increasing"):
        LatentDataset([Subject("a", np.array([1, 1, 2]), lat)])
    with pytest.raises(LatentDatasetError, match="3 ages but latents"):
        LatentDataset([Subject("a", np.array([1, 2, 3]), lat[:2])])
    bad = lat.copy()
    bad[1, 2] = np.nan
    with pytest.raises(LatentDatasetError, match="NaN"):
        LatentDataset([Subject("a", np.array([1, 2, 3]), bad)])


# ---------------------------------------------------------------------------------------------
# pairing and split parameters, and the splits a small dataset cannot give
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,needle", [
    (dict(n_pairs=-5), r"n_pairs \(--n-pairs\).* >= 1, got -5"),
    (dict(n_pairs=0), r"n_pairs \(--n-pairs\).* >= 1, got 0"),
    (dict(n_pairs=2.5), r"n_pairs \(--n-pairs\).*got 2\.5"),
    (dict(n_pairs="10"), r"n_pairs \(--n-pairs\).*got '10'"),
    (dict(min_gap=-1), r"min_gap \(--min-gap\).* >= 0, got -1"),
    (dict(min_gap=True), r"min_gap \(--min-gap\).*got True"),
])
@pytest.mark.parametrize("strategy", ["first", "random"])
def test_pair_counts_are_validated(small_ds, kw, needle, strategy):
    with pytest.raises(LatentDatasetError, match=needle):
        make_pairs(small_ds, strategy, **kw)
    with pytest.raises(LatentDatasetError, match=needle):
        make_splits(small_ds, "internal", strategy, **kw)


def test_unknown_strategy_split_and_fraction(small_ds):
    with pytest.raises(LatentDatasetError, match="unknown pairing strategy 'pairs'"):
        make_pairs(small_ds, "pairs")
    with pytest.raises(LatentDatasetError, match="unknown split 'inner'"):
        make_splits(small_ds, "inner")
    for tf in (0, 1, 1.5, "x", True):
        with pytest.raises(LatentDatasetError, match=r"test_fraction \(--test-fraction\)"):
            make_splits(small_ds, "internal", test_fraction=tf)


def _tiny(tmp_path, photos):
    for k, n in enumerate(photos):
        write_subject(tmp_path / f"s{k}", list(range(100, 100 + 10 * n, 10)), seed=k)
    return LatentDataset.load(tmp_path)


def test_too_few_pairs_for_an_internal_split_says_why_and_what_to_do(tmp_path):
    ds = _tiny(tmp_path, [2])
    with pytest.raises(LatentDatasetError) as info:
        make_splits(ds, "internal", "first")
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path}: too few pairs (1 first pairs) for an internal split"), msg
    assert "subject s0 has 2 photos" in msg and "--pairs all" in msg and "\n" not in msg
    ds = _tiny(tmp_path / "two", [2, 1])
    with pytest.raises(LatentDatasetError, match=r"subjects s1 \(1 photo\), s0 \(2 photos\)"):
        make_splits(ds, "internal", "all")
    # enough pairs with `all`: the advice works
    ds = _tiny(tmp_path / "three", [4])
    (fold,) = make_splits(ds, "internal", "all")
    assert len(fold.train) + len(fold.test) == 6


def test_future_and_external_splits_a_dataset_cannot_give(tmp_path):
    ds = _tiny(tmp_path, [5, 2])
    with pytest.raises(LatentDatasetError, match=r"subject s1 has 2 photos: a future split needs at least 3"):
        make_splits(ds, "future")
    one = _tiny(tmp_path / "one", [5])
    with pytest.raises(LatentDatasetError, match=r"needs at least two; the dataset has one \(s0\)"):
        make_splits(one, "external")
    with pytest.raises(LatentDatasetError, match=r"no random pairs with an age gap of at least 100 days "
                                                 r"\(--min-gap\): the largest gap within a subject is 40 days"):
        make_pairs(one, "random", min_gap=100)
