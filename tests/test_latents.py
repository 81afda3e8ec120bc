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


def test_duplicate_age_is_refused(tmp_path):
    write_subject(tmp_path / "ann", [10, 20])
    np.save(tmp_path / "ann" / "0010.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(LatentDatasetError, match="two latents for age 10"):
        load_subject(tmp_path / "ann")


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
    with pytest.raises(LatentDatasetError, match="no subject named"):
        make_splits(small_ds, "external", "first", holdout="nobody")
