"""`aging train` on bad input that concerns the latent datasets and the age models.

One table: each case builds a dataset folder ``d`` in a fresh working directory, runs
``aging train d ... -o r`` with relative paths as a user would, and expects either success (the
model is saved and reloads) or a user error: non-zero exit, no traceback, one line on stderr
naming the file or the option.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from aging.io import read_npz, save_npz
from aging.synthetic import generate, write_dataset
from tests.conftest import small_config
from tests.harness import assert_user_error, cli

pytestmark = pytest.mark.usefixtures("one_thread")

OK = None  # the expectation of a case that must succeed


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """Datasets to copy: ``two`` (2 subjects x 12 photos of (2, 4)) and ``one`` (the study's
    case: one subject x 30 photos of (4, 16)), each with its truth.npz."""
    root = tmp_path_factory.mktemp("templates")
    for label, kw in (("two", dict(subjects=2, photos=12, shape=(2, 4))),
                      ("one", dict(subjects=1, photos=30, shape=(4, 16)))):
        ds, truth = generate(small_config(**kw))
        write_dataset(ds, truth, root / label)
    return root


def _files(d: Path, subject: str = "subject00") -> list[Path]:
    return sorted((d / subject).glob("[0-9]*.npy"), key=lambda p: int(p.stem))


def _put(d: Path, name: str, array, subject: str = "subject00", **kw) -> None:
    np.save(d / subject / name, array, **kw)


def _keep_photos(d: Path, subject: str, n: int) -> None:
    for p in _files(d, subject)[n:]:
        p.unlink()
    (d / "truth.npz").unlink()


def _truth(d: Path, fn) -> None:
    truth = read_npz(d / "truth.npz")
    fn(truth)
    save_npz(d / "truth.npz", **truth)


def _all_equal(d: Path) -> None:
    first = np.load(_files(d)[0])
    for sub in ("subject00", "subject01"):
        for p in _files(d, sub):
            np.save(p, first)
    (d / "truth.npz").unlink()


def _age(d: Path, k: int = 3) -> str:
    return _files(d)[k].stem


MLP = ["-p", "hidden=4", "-p", "epochs=2", "-p", "dims=4"]

# id: (template, setup(d), extra args of `aging train d`, expected: OK or the needles of the error line)
CASES = {
    # -- the study's own protocol: one subject, first pairs, internal split, every model -----------
    "one-subject-offset": ("one", None, ["--model", "offset", "--select", "first", "--dims", "32"], OK),
    "one-subject-ridge": ("one", None, ["--model", "ridge", "--select", "first", "--dims", "32"], OK),
    "one-subject-interp": ("one", None, ["--model", "interp", "--select", "first", "--dims", "32"], OK),
    "one-subject-direct": ("one", None, ["--model", "direct"], OK),
    "one-subject-direction": ("one", None, ["--model", "direction"], OK),
    "one-subject-mlp": ("one", None, ["--model", "mlp", "-p", "hidden=8", "-p", "epochs=2", "-p", "dims=8"], OK),
    "one-subject-offset-all-dims": ("one", None, ["--model", "offset", "--select", "linear"], OK),
    # -- hyper-parameter values ---------------------------------------------------------------------
    "select-bogus": ("two", None, ["-p", "select=bogus"], ("parameter select", "bogus", "first, linear, norm")),
    "dims-float": ("two", None, ["-p", "dims=2.5"], ("parameter dims", "2.5", "whole number")),
    "dims-zero": ("two", None, ["-p", "dims=0"], ("parameter dims", "got 0")),
    "dims-too-many": ("two", None, ["--select", "first", "--dims", "999"],
                      ("parameter dims", "between 1 and 8", "999")),
    "inputs-bogus": ("two", None, ["-p", "inputs=some"], ("parameter inputs", "some")),
    "hidden-abc": ("two", None, ["--model", "mlp", "-p", "hidden=abc"], ("parameter hidden", "'abc'")),
    "hidden-negative": ("two", None, ["--model", "mlp", "-p", "hidden=-3"], ("parameter hidden", "-3")),
    "activation-bogus": ("two", None, ["--model", "mlp", "-p", "activation=softmax"], ("parameter activation", "tanh")),
    "lr-zero": ("two", None, ["--model", "mlp", "-p", "lr=0"], ("parameter lr", "> 0")),
    "val-fraction-one": ("two", None, ["--model", "mlp", "-p", "val_fraction=1"], ("parameter val_fraction", "< 1")),
    "device-bogus": ("two", None, ["--model", "mlp", "-p", "device=tpu"], ("parameter device", "tpu")),
    "cv-one": ("two", None, ["--model", "ridge", "-p", "cv=1"], ("parameter cv", ">= 2")),
    "alphas-empty": ("two", None, ["--model", "ridge", "-p", "alphas=[]"], ("parameter alphas",)),
    "alphas-negative": ("two", None, ["--model", "ridge", "-p", "alphas=[1, -2]"], ("parameter alphas", ">= 0")),
    "k-zero": ("two", None, ["--model", "interp", "-p", "k=0"], ("parameter k", ">= 1")),
    "direction-missing": ("two", None, ["--model", "direction", "-p", "direction=nope.npy"], ("nope.npy",)),
    "direction-shape": ("two", lambda d: np.save(d.parent / "dir.npy", np.ones((3, 3), np.float32)),
                        ["--model", "direction", "-p", "direction=dir.npy"], ("dir.npy", "does not match")),
    "direction-text": ("two", lambda d: (d.parent / "dir.npy").write_text("0.1 0.2"),
                       ["--model", "direction", "-p", "direction=dir.npy"], ("dir.npy", "not a usable direction file")),
    # -- pairs and splits ---------------------------------------------------------------------------
    "n-pairs-negative": ("two", None, ["--pairs", "random", "--n-pairs", "-5"], ("--n-pairs", "-5")),
    "n-pairs-zero": ("two", None, ["--pairs", "random", "--n-pairs", "0"], ("--n-pairs", "0")),
    "min-gap-negative": ("two", None, ["--pairs", "random", "--min-gap", "-3"], ("--min-gap", "-3")),
    "min-gap-too-large": ("two", None, ["--pairs", "random", "--min-gap", "100000"], ("--min-gap", "largest gap")),
    "test-fraction": ("two", None, ["--test-fraction", "1.5"], ("--test-fraction", "1.5")),
    "internal-too-few-pairs": ("one", lambda d: _keep_photos(d, "subject00", 2), [],
                               ("too few pairs", "subject subject00 has 2 photos", "--pairs all")),
    "future-too-few-photos": ("two", lambda d: _keep_photos(d, "subject01", 2), ["--split", "future"],
                              ("subject subject01 has 2 photos", "future split")),
    "external-one-subject": ("one", None, ["--split", "external"], ("external split", "subject00")),
    "external-unknown-holdout": ("two", None, ["--split", "external", "--holdout", "nobody"], ("--holdout", "nobody")),
    "all-equal-latents": ("two", _all_equal, [], ("d: all ", "training latents are identical")),
    # -- latent files -------------------------------------------------------------------------------
    "age-underscore": ("two", lambda d: _put(d, "9_207.npy", np.zeros((2, 4), np.float32)), [],
                       ("d/subject00/9_207.npy", "age in days")),
    "age-negative": ("two", lambda d: _put(d, "-5.npy", np.zeros((2, 4), np.float32)), [],
                     ("d/subject00/-5.npy", "age in days")),
    "hidden-temporaries-ignored": ("two", lambda d: [(d / "subject00" / n).write_bytes(b"\x93NUMPY torn")
                                                     for n in (".123.abc.tmp.npy", ".9061.5336qh80.npy")], [], OK),
    "other-shape": ("two", lambda d: _put(d, f"{_age(d)}.npy", np.zeros((4, 2), np.float32)), [],
                    ("d/subject00/", ".npy", "shape (4, 2)")),
    "nan-latent": ("two", lambda d: _put(d, f"{_age(d)}.npy", np.full((2, 4), np.nan, np.float32)), [],
                   ("d/subject00/", "NaN")),
    "truncated-npy": ("two", lambda d: _files(d)[3].write_bytes(_files(d)[3].read_bytes()[:90]), [],
                      ("d/subject00/", "unreadable latent")),
    "pickled-npy": ("two", lambda d: _put(d, f"{_age(d)}.npy", np.array([{}], dtype=object), allow_pickle=True), [],
                    ("d/subject00/", "unreadable latent")),
    "duplicate-age": ("two", lambda d: _put(d, f"0{_age(d)}.npy", np.zeros((2, 4), np.float32)), [],
                      ("two latents for age", ".npy and ")),
    "empty-subject": ("two", lambda d: (d / "zed").mkdir(), [], ("d/zed", "empty subject")),
    "no-dataset": ("two", lambda d: shutil.rmtree(d), [], ("d: no such directory",)),
    # -- truth.npz ----------------------------------------------------------------------------------
    "truth-corrupt": ("two", lambda d: (d / "truth.npz").write_bytes(b"PK\x03\x04 broken"), [],
                      ("d/truth.npz", "unreadable")),
    "truth-truncated": ("two", lambda d: (d / "truth.npz").write_bytes((d / "truth.npz").read_bytes()[:500]), [],
                        ("d/truth.npz", "unreadable")),
    "truth-other-shape": ("two", lambda d: _truth(d, lambda t: t.update({"clean/subject00": np.zeros((12, 8))})), [],
                          ("d/truth.npz", "clean/subject00", "(12, 8)")),
    "truth-other-ages": ("two", lambda d: _truth(d, lambda t: t.update({"ages/subject01": t["ages/subject01"] * 2})),
                         [], ("d/truth.npz", "subject01", "at age")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train(case, templates, tmp_path):
    template, setup, args, expect = CASES[case]
    shutil.copytree(templates / template, tmp_path / "d")
    if setup is not None:
        setup(tmp_path / "d")
    out = cli(["train", "d", *args, "-o", "r", "-q"], cwd=tmp_path)
    if expect is OK:
        assert out.exception is None and out.exit_code == 0, (out.stderr, out.exception)
        from aging.latents import LatentDataset
        from aging.models import load_model

        model = load_model(tmp_path / "r")
        ds = LatentDataset.load(tmp_path / "d")
        s = ds.subjects[0]
        pred = model.predict(s.latents[0], s.ages[0], s.ages)
        assert pred.shape == (len(s),) + ds.latent_shape and np.all(np.isfinite(pred))
        return
    assert_user_error(out, *expect)
    assert not (tmp_path / "r" / "model.json").exists()
