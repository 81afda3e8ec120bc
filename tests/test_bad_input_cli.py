"""Bad input to every latent-space and render verb, as a user types it.

One table of cases. Each runs ``aging ...`` in-process from one working folder with relative
paths and the default output folders (``runs/<model>``, ``runs/<experiment>``, ``runs/demo``)
and must end with exit status != 0, no traceback, one error line naming the file or option at
fault, and the folder exactly as it was: nothing written, nothing finished lost or rewritten.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.harness import assert_user_error, cli, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

TOMLS = {
    "run5.toml": 'name = "x"\nrun = 5\n',
    "defaults3.toml": 'defaults = 3\n[[run]]\nmodel = "interp"\n',
    "seedabc.toml": '[[run]]\nmodel = "interp"\nseed = "abc"\n',
    "modellist.toml": '[[run]]\nmodel = ["offset"]\n',
    "hiddenabc.toml": '[[run]]\nmodel = "mlp"\nhidden = "abc"\n',
    "fraction.toml": '[[run]]\nmodel = "interp"\ntest_fraction = 1.0\n',
    "escape.toml": '[[run]]\nname = "../../outside"\nmodel = "interp"\n',
    "onlyexternal.toml": 'name = "ext"\n[[run]]\nmodel = "direction"\nsplit = "external"\n',
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A user's folder: datasets, finished runs (default output folders), a tiny generator,
    damaged and misplaced files."""
    from aging.stylegan.checkpoints import save_generator
    from tests.tiny import photo_generator

    w = tmp_path_factory.mktemp("user")
    G = photo_generator(16)
    save_generator(G, w / "g")
    shape = f"{G.num_ws},{G.w_dim}"
    for args in (["synth", "d", "--subjects", 2, "--photos", 30, "--shape", shape],
                 ["synth", "one", "--subjects", 1, "--photos", 20, "--shape", shape],
                 ["synth", "d4", "--subjects", 2, "--photos", 20, "--shape", "4,16"],
                 ["train", "d", "-q"],  # -> runs/offset
                 ["train", "d", "--model", "direction", "-q"],  # -> runs/direction
                 ["train", "d4", "--model", "direction", "-o", "runs/other-shape", "-q"]):
        out = cli(args, w)
        assert out.exit_code == 0, (args, out.stderr, out.exception)
    ages = sorted(int(p.stem) for p in (w / "d" / "subject00").glob("*.npy"))
    (w / "ages.txt").write_text(f"{ages[0]}\n")
    # a run folder whose model.npz is damaged
    shutil.copytree(w / "runs" / "direction", w / "damaged")
    npz = w / "damaged" / "model.npz"
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    np.save(w / "wrong.npy", np.zeros((3, 3), np.float32))
    # datasets with a bad file (the messages are the dataset reader's; the file must be named)
    for name, bad, arr in (("badname", "x1.npy", np.zeros((2, 3))), ("badshape", "70.npy", np.zeros(5))):
        sub = w / name / "ann"
        sub.mkdir(parents=True)
        for a in (10, 20, 30, 40, 50, 60):
            np.save(sub / f"{a}.npy", np.full((2, 3), a / 10, np.float32))
        np.save(sub / bad, arr.astype(np.float32))
    for name, text in TOMLS.items():
        (w / name).write_text(text)
    (w / "latin1.toml").write_bytes('description = "étude"\n[[run]]\nmodel = "interp"\n'.encode("latin-1"))
    (w / "notes" / "a").mkdir(parents=True)
    (w / "notes" / "a" / "readme.txt").write_text("not latents")
    return w


SRC = "<a latent of d>"  # replaced by d/subject00/<its first age>.npy


# (id, args, needles the error line must contain)
CASES = [
    # --- synth
    ("synth-not-empty", ["synth", "d", "--subjects", 3], ["d", "--force"]),
    ("synth-force-foreign", ["synth", "notes", "--force"], ["readme.txt", "not part of a latent dataset"]),
    ("synth-photos-1", ["synth", "x", "--photos", 1], ["--photos"]),
    ("synth-subjects-0", ["synth", "x", "--subjects", 0], ["--subjects"]),
    ("synth-shape-abc", ["synth", "x", "--shape", "4,abc"], ["--shape"]),
    ("synth-shape-huge", ["synth", "x", "--shape", "100000,100000"], ["--shape", "at most"]),
    ("synth-noise-nan", ["synth", "x", "--noise", "nan"], ["--noise"]),
    ("synth-noise-negative", ["synth", "x", "--noise", "-1"], ["--noise"]),
    ("synth-age-fraction-0", ["synth", "x", "--age-fraction", "0"], ["--age-fraction"]),
    ("synth-trend-inf", ["synth", "x", "--trend", "inf"], ["--trend"]),
    ("synth-seed-negative", ["synth", "x", "--seed", "-1"], ["--seed"]),
    # --- train
    ("train-missing-data", ["train", "missing"], ["missing"]),
    ("train-n-pairs-negative", ["train", "d", "--n-pairs", "-5"], ["--n-pairs"]),
    ("train-min-gap-negative", ["train", "d", "--min-gap", "-1"], ["--min-gap"]),
    ("train-test-fraction-0", ["train", "d", "--test-fraction", "0"], ["--test-fraction"]),
    ("train-test-fraction-1", ["train", "d", "--test-fraction", "1"], ["--test-fraction"]),
    ("train-test-fraction-nan", ["train", "d", "--test-fraction", "nan"], ["--test-fraction"]),
    ("train-test-fraction-inf", ["train", "d", "--test-fraction", "inf"], ["--test-fraction"]),
    ("train-seed-negative", ["train", "d", "--seed", "-1"], ["--seed"]),
    ("train-hidden-abc", ["train", "d", "--model", "mlp", "-p", "hidden=abc"], ["hidden"]),
    ("train-dims-float", ["train", "d", "-p", "dims=2.5"], ["dims"]),
    ("train-dims-option-float", ["train", "d", "--dims", "2.5"], ["--dims"]),
    ("train-select-bogus", ["train", "d", "--select", "bogus"], ["--select"]),
    ("train-select-param-bogus", ["train", "d", "-p", "select=bogus"], ["select"]),
    ("train-unknown-model", ["train", "d", "--model", "transformer"], ["--model", "transformer"]),
    ("train-unknown-param", ["train", "d", "-p", "depth=3"], ["depth"]),
    ("train-param-no-value", ["train", "d", "-p", "hidden"], ["KEY=VALUE"]),
    ("train-dims-not-applicable", ["train", "d", "--model", "direct", "--dims", 3], ["--dims", "direct"]),
    ("train-external-one-subject", ["train", "one", "--split", "external"], ["at least two"]),
    ("train-holdout-unknown", ["train", "d", "--split", "external", "--holdout", "nobody"], ["nobody"]),
    ("train-holdout-not-external", ["train", "d", "--holdout", "subject00"], ["--holdout"]),
    ("train-bad-file-name", ["train", "badname"], ["x1.npy"]),
    ("train-bad-latent-shape", ["train", "badshape"], ["70.npy"]),
    ("train-pairs-bogus", ["train", "d", "--pairs", "some"], ["--pairs"]),
    # --- evaluate
    ("evaluate-nothing-to-do", ["evaluate", "d"], ["--experiment", "--linearity"]),
    ("evaluate-missing-data", ["evaluate", "missing", "--experiment", "study"], ["missing"]),
    ("evaluate-no-experiment-file", ["evaluate", "d", "--experiment", "nope.toml"], ["nope.toml", "no such"]),
    ("evaluate-no-experiment-name", ["evaluate", "d", "--experiment", "studdy"], ["studdy", "study"]),
    ("evaluate-run-5", ["evaluate", "d", "--experiment", "run5.toml"], ["run5.toml", "'run'", "list"]),
    ("evaluate-defaults-3", ["evaluate", "d", "--experiment", "defaults3.toml"], ["defaults3.toml", "'defaults'"]),
    ("evaluate-seed-abc", ["evaluate", "d", "--experiment", "seedabc.toml"], ["seedabc.toml", "'seed'"]),
    ("evaluate-model-list", ["evaluate", "d", "--experiment", "modellist.toml"], ["modellist.toml", "'model'"]),
    ("evaluate-hidden-abc", ["evaluate", "d", "--experiment", "hiddenabc.toml"], ["hiddenabc.toml", "hidden"]),
    ("evaluate-test-fraction-1", ["evaluate", "d", "--experiment", "fraction.toml"], ["fraction.toml", "test_fraction"]),
    ("evaluate-run-name-escapes", ["evaluate", "d", "--experiment", "escape.toml"], ["escape.toml", "folder name"]),
    ("evaluate-not-utf8", ["evaluate", "d", "--experiment", "latin1.toml"], ["latin1.toml", "UTF-8"]),
    ("evaluate-folder-as-experiment", ["evaluate", "d", "--experiment", "notes"], ["notes", "folder"]),
    ("evaluate-no-run-applies", ["evaluate", "one", "--experiment", "onlyexternal.toml"],
     ["onlyexternal.toml", "no run applies", "at least two"]),
    ("evaluate-anchors-999", ["evaluate", "d", "--linearity", "--anchors", "0,999"], ["--anchors", "999", "30 photos"]),
    ("evaluate-anchors-minus-31", ["evaluate", "d", "--linearity", "--anchors", "-31,5"], ["--anchors", "-31", "30 photos"]),
    ("evaluate-anchors-one", ["evaluate", "d", "--linearity", "--anchors", "0"], ["--anchors"]),
    ("evaluate-anchors-same-photo", ["evaluate", "d", "--linearity", "--anchors", "3,-27"], ["--anchors", "same photo"]),
    ("evaluate-linearity-unknown-subject", ["evaluate", "d", "--linearity", "--subject", "nobody"], ["--subject", "nobody"]),
    ("evaluate-anchors-without-linearity", ["evaluate", "d", "--experiment", "study", "--anchors", "0,1"],
     ["--anchors", "--linearity"]),
    # --- demo
    ("demo-photos-1", ["demo", "--photos", 1], ["--photos"]),
    ("demo-subjects-0", ["demo", "--subjects", 0], ["--subjects"]),
    ("demo-seed-negative", ["demo", "--seed", "-3"], ["--seed"]),
    ("demo-no-experiment", ["demo", "--experiment", "nope.toml"], ["nope.toml"]),
    ("demo-bad-experiment", ["demo", "--experiment", "seedabc.toml"], ["seedabc.toml", "'seed'"]),
    # --- render
    ("render-damaged-model", ["render", "--model", "damaged", "-g", "g", "--source", SRC,
                                        "--ages", "20y:21y:1y", "-o", "o.gif"], ["damaged", "model.npz"]),
    ("render-missing-model", ["render", "--model", "nomodel", "-g", "g", "--source", SRC,
                                        "--ages", "20y:21y:1y", "-o", "o.gif"], ["nomodel"]),
    ("render-npz-as-source", ["render", "--model", "runs/direction", "-g", "g", "--source", "d/truth.npz",
                              "--start-age", "20y", "--ages", "20y:21y:1y", "-o", "o.gif"], ["truth.npz"]),
    ("render-missing-source", ["render", "--model", "runs/direction", "-g", "g", "--source", "d/subject00/1.npy",
                               "--ages", "20y:21y:1y", "-o", "o.gif"], ["1.npy"]),
    ("render-source-without-age", ["render", "--model", "runs/direction", "-g", "g", "--source", "wrong.npy",
                                   "--ages", "20y:21y:1y", "-o", "o.gif"], ["--start-age", "wrong.npy"]),
    ("render-wrong-latent-shape", ["render", "--model", "runs/direction", "-g", "g", "--source", "wrong.npy",
                                   "--start-age", "20y", "--ages", "20y:21y:1y", "-o", "o.gif"],
     ["wrong.npy", "shape"]),
    ("render-model-for-another-generator", ["render", "--model", "runs/other-shape", "-g", "g", "--source",
                                                      SRC, "--ages", "20y:21y:1y", "-o", "o.gif"],
     ["runs/other-shape", "(4, 16)"]),
    ("render-ages-huge", ["render", "--model", "runs/direction", "-g", "g", "--source", SRC,
                                    "--ages", "0:100000000:1", "-o", "o.gif"], ["--ages"]),
    ("render-ages-too-many-frames", ["render", "--model", "runs/direction", "-g", "g", "--source", SRC,
                                               "--ages", "0:70000:1", "-o", "o.gif"], ["--ages", "10000"]),
    ("render-no-source", ["render", "--model", "runs/direction", "-g", "g", "--ages", "20y:21y:1y", "-o", "o.gif"],
     ["--source"]),
    ("render-model-and-latents", ["render", "--model", "runs/direction", "--latents", "d/subject00", "-g", "g",
                                  "-o", "o.gif"], ["--model", "--latents"]),
    ("render-fps-0", ["render", "--latents", "d/subject00", "-g", "g", "--fps", "0", "-o", "o.gif"], ["--fps"]),
    ("render-fps-nan", ["render", "--latents", "d/subject00", "-g", "g", "--fps", "nan", "-o", "o.gif"], ["--fps"]),
    ("render-size-0", ["render", "--latents", "d/subject00", "-g", "g", "--size", "0", "-o", "o.gif"], ["--size"]),
    ("render-batch-0", ["render", "--latents", "d/subject00", "-g", "g", "--batch", "0", "-o", "o.gif"], ["--batch"]),
    ("render-format-avi", ["render", "--latents", "d/subject00", "-g", "g", "--format", "avi", "-o", "o.gif"],
     ["--format", "avi"]),
    ("render-device-gpu", ["render", "--latents", "d/subject00", "-g", "g", "--device", "gpu", "-o", "o.gif"],
     ["--device"]),
    ("render-missing-generator", ["render", "--latents", "d/subject00", "-g", "nope.pkl", "-o", "o.gif"],
     ["nope.pkl"]),
    ("render-latents-missing", ["render", "--latents", "nowhere", "-g", "g", "-o", "o.gif"], ["nowhere"]),
    ("render-latents-wrong-shape", ["render", "--latents", "d4/subject00", "-g", "g", "-o", "o.gif"], ["d4/subject00", "(4, 16)"]),
    ("render-subject-without-photos", ["render", "--latents", "d/subject00", "--subject", "d/subject01", "-g", "g",
                                       "-o", "o.gif"], ["d/subject01", "aligned photos"]),
    # --- mix
    ("mix-wrong-shape", ["mix", "wrong.npy", SRC, "-g", "g", "-o", "m.png"], ["wrong.npy", "shape"]),
    ("mix-missing-source", ["mix", "gone.npy", SRC, "-g", "g", "-o", "m.png"], ["gone.npy"]),
    ("mix-npz-target", ["mix", SRC, "d/truth.npz", "-g", "g", "-o", "m.png"], ["truth.npz"]),
    ("mix-target-folder-wrong-shape", ["mix", SRC, "d4/subject00", "-g", "g", "-o", "m.png"], ["shape"]),
    ("mix-layers-out-of-range", ["mix", SRC, SRC, "-g", "g", "--layers", "3:99", "-o", "m.png"],
     ["--layers", "3:99"]),
    ("mix-size-0", ["mix", SRC, SRC, "-g", "g", "--size", "0", "-o", "m.png"], ["--size"]),
    # --- morph
    ("morph-wrong-shape", ["morph", "wrong.npy", SRC, "-g", "g", "-o", "m.gif"], ["wrong.npy", "shape"]),
    ("morph-npz", ["morph", SRC, "d/truth.npz", "-g", "g", "-o", "m.gif"], ["truth.npz"]),
    ("morph-frames-0", ["morph", SRC, SRC, "-g", "g", "--frames", "0", "-o", "m.gif"], ["--frames"]),
    ("morph-frames-huge", ["morph", SRC, SRC, "-g", "g", "--frames", "100000", "-o", "m.gif"],
     ["--frames"]),
    ("morph-fps-0", ["morph", SRC, SRC, "-g", "g", "--fps", "0", "-o", "m.gif"], ["--fps"]),
    ("morph-fps-nan", ["morph", SRC, SRC, "-g", "g", "--fps", "nan", "-o", "m.gif"], ["--fps"]),
    ("morph-w-latent-as-z", ["morph", SRC, SRC, "-g", "g", "--space", "z", "-o", "m.gif"],
     ["z shape"]),
]


def tree(folder: Path) -> tuple[dict, list[str]]:
    """Every file (size, mtime, inode) and every folder under ``folder``."""
    return snapshot(folder), sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_dir())


def test_the_table_covers_every_verb():
    verbs = {args[0] for _, args, _ in CASES}
    assert verbs == {"synth", "train", "evaluate", "demo", "render", "mix", "morph"}
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(world, case):
    _, args, needles = case
    first = (world / "ages.txt").read_text().strip()
    args = [f"d/subject00/{first}.npy" if a == SRC else a for a in args]
    before = tree(world)
    out = cli(args, world)
    assert_user_error(out, *needles)
    assert out.stderr.startswith("Error: ")
    assert tree(world) == before  # nothing written, nothing finished lost or rewritten


def test_the_finished_runs_still_reuse(world):
    """After every bad command the finished runs are still finished (checked last)."""
    before = tree(world)
    out = cli(["train", "d", "-q"], world)
    assert out.exit_code == 0 and "reused" in out.stdout
    assert tree(world) == before
