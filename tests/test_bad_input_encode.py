"""Bad input of ``aging encode`` and ``aging weights`` (issue 10), and the re-runs that must not write.

The table: every case builds its bad input inside a fresh copy of a working directory that holds
a tiny generator (``gen/``, the project's format) and a finished encode (``photos/``: four
``<age_days>.png`` with ``latents/``, ``recon/``, ``encode.jsonl``, ``encode.options.json`` and
``encode.png`` beside them). The command must exit non-zero with one error line naming the file or
option, and leave every file of the directory as it was (size, mtime, inode).
"""

from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from aging.encode import pipeline as pl
from aging.stylegan.checkpoints import save_generator
from tests.harness import assert_user_error, cli, snapshot
from tests.tiny import photo_generator, save_photos

pytestmark = pytest.mark.usefixtures("one_thread")

RES = 16
FAST = ["--loss", "mse", "--steps", "4", "--steps-after-first", "2", "--batch", "2", "--min-chain", "1",
        "--device", "cpu", "-q"]


def encode(*extra, data="photos", gen="gen"):
    return ["encode", data, "-g", gen, *FAST, *extra]


@pytest.fixture(scope="module")
def G():
    return photo_generator(RES)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, G):
    root = tmp_path_factory.mktemp("finished")
    save_generator(G, root / "gen")
    save_photos(G, root / "photos", 4)
    out = cli(encode(), cwd=root)
    assert out.exit_code == 0 and "encoded 4 photos" in out.stdout, out.stderr
    return root


@pytest.fixture
def work(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "w")
    return tmp_path / "w"


# ---------------------------------------------------------------------------------------------
# Builders: each writes its bad input into the working directory and returns the command line


def photo(name: str, make: Callable[[Path], None]):
    def build(w: Path, G):
        make(w / "photos" / name)
        return encode()
    return build


def nonsquare(p):
    Image.new("RGB", (RES + 4, RES)).save(p)


def garbage(p):
    p.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")


def truncated(p):
    data = (p.parent / "7000.png").read_bytes()
    p.write_bytes(data[: len(data) // 2])


def too_small(p):
    Image.new("RGB", (RES // 2, RES // 2)).save(p)


def good_copy(p):
    shutil.copy(p.parent / "7030.png", p)


def subject_with_manifest(age_text: str):
    def build(w: Path, G):
        (w / "anna" / "aligned").mkdir(parents=True)
        shutil.copy(w / "photos" / "7000.png", w / "anna" / "aligned" / "7000.png")
        (w / "anna" / "manifest.csv").write_text(f"index,age_days,status,file\n0,{age_text},kept,aligned/7000.png\n")
        return encode(data="anna")
    return build


def generator_file(name: str, make: Callable[[Path, object], None]):
    def build(w: Path, G):
        make(w / name, G)
        return encode(gen=name)
    return build


def nan_generator(path, G):
    bad = photo_generator(RES)
    with torch.no_grad():
        next(p for n, p in bad.named_parameters() if n.endswith("affine.weight"))[0, 0] = float("nan")
    save_generator(bad, path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return print, (f"pwned {self.marker}",)


def option(name: str, value: str):
    def build(w: Path, G):
        return encode(name, value)
    return build


def command(*args):
    def build(w: Path, G):
        return list(args)
    return build


def then(*steps):
    """Run several builders' side effects; the last one gives the command line."""
    def build(w: Path, G):
        args = None
        for step in steps:
            args = step(w, G)
        return args
    return build


def write(rel: str, data: bytes):
    def build(w: Path, G):
        (w / rel).parent.mkdir(parents=True, exist_ok=True)
        (w / rel).write_bytes(data)
        return encode()
    return build


@dataclass
class Case:
    id: str
    build: Callable[[Path, object], list]
    needles: tuple[str, ...]


FLOAT_OPTIONS = ["--lr", "--lr-after-first", "--smooth", "--mean-reg", "--clip"]
RANDOM = np.random.RandomState(0).bytes(4096)

CASES = [
    # the data folder
    Case("missing-folder", command(*encode(data="nowhere")), ("nowhere", "no such folder")),
    Case("folder-is-a-file", command(*encode(data="gen/generator.json")), ("generator.json", "not a folder")),
    Case("out-is-a-file", command(*encode("-o", "gen/generator.json")), ("--out", "generator.json", "not a folder")),
    Case("no-photos", then(lambda w, G: (w / "empty").mkdir(), command(*encode(data="empty"))),
         ("empty", "no photos")),
    Case("non-square-image", photo("7040.png", nonsquare), ("7040.png", f"{RES + 4}x{RES}", "square")),
    Case("corrupt-image", photo("7040.png", garbage), ("7040.png", "unreadable image")),
    Case("truncated-image", photo("7040.png", truncated), ("7040.png", "unreadable image")),
    Case("image-below-working-resolution", photo("7040.png", too_small), ("7040.png", "working resolution")),
    Case("name-with-underscore", photo("9_207.png", good_copy), ("9_207.png", "not an age in days")),
    Case("negative-name", photo("-5.png", good_copy), ("-5.png", "not an age in days")),
    Case("name-not-an-age", photo("me.png", good_copy), ("me.png", "not an age in days")),
    Case("two-photos-one-age", photo("7030.jpg", lambda p: Image.new("RGB", (RES, RES)).save(p)),
         ("7030", "second photo")),
    Case("manifest-age-with-underscore", subject_with_manifest("9_207"), ("manifest.csv", "age in days")),
    Case("manifest-negative-age", subject_with_manifest("-5"), ("manifest.csv", "age in days")),
    # the generator
    Case("generator-missing", command(*encode(gen="nope.pkl")), ("nope.pkl", "no such file")),
    Case("generator-random-bytes", generator_file("random.bin", lambda p, G: p.write_bytes(RANDOM)),
         ("random.bin",)),
    Case("generator-random-pickle", generator_file("junk.pkl", lambda p, G: p.write_bytes(b"\x80\x04" + RANDOM)),
         ("junk.pkl", "network pickle")),
    Case("generator-text-file", generator_file("notes.txt", lambda p, G: p.write_text("hello\n")),
         ("notes.txt", "unknown checkpoint format")),
    Case("generator-empty-file", generator_file("empty.pkl", lambda p, G: p.write_bytes(b"")),
         ("empty.pkl", "unknown checkpoint format")),
    Case("generator-holds-nan", generator_file("nan-gen", nan_generator), ("nan-gen", "NaN")),
    Case("generator-pt-without-config", generator_file("lone.pt", lambda p, G: torch.save(G.state_dict(), p)),
         ("lone.pt", "lone.json")),
    Case("generator-config-not-json", then(write("gen/generator.json", b"{not json"), command(*encode())),
         ("generator.json", "not valid JSON")),
    Case("generator-code-pickle", generator_file("evil.pkl", lambda p, G: p.write_bytes(pickle.dumps(
        {"G_ema": _Evil("x")}))), ("evil.pkl", "refusing global")),
    # options: every float option finite and in range, every count >= 1
    *[Case(f"{opt}={value}", option(opt, value), (opt, value))
      for opt in FLOAT_OPTIONS for value in ("nan", "inf", "-1")],
    Case("--lr=0", option("--lr", "0"), ("--lr", "x>0")),
    Case("--clip=-inf", option("--clip", "-inf"), ("--clip",)),
    Case("--steps=0", option("--steps", "0"), ("--steps", "x>=1")),
    Case("--steps=1.5", option("--steps", "1.5"), ("--steps", "not a valid integer")),
    Case("--batch=0", option("--batch", "0"), ("--batch", "x>=1")),
    Case("--steps-after-first=0", option("--steps-after-first", "0"), ("--steps-after-first",)),
    Case("--min-chain=0", option("--min-chain", "0"), ("--min-chain",)),
    Case("--chain-length=-1", option("--chain-length", "-1"), ("--chain-length",)),
    Case("--seed=-1", option("--seed", "-1"), ("--seed",)),
    Case("--resolution=0", option("--resolution", "0"), ("--resolution",)),
    Case("--resolution-above-generator", option("--resolution", str(2 * RES)), ("--resolution", "exceeds")),
    Case("--device=unknown", option("--device", "tpu9"), ("--device", "tpu9")),
    Case("--loss=unknown", option("--loss", "l2"), ("--loss", "l2")),
    # a batch whose loss is not finite: stopped before its latents are written
    Case("loss-not-finite", command(*encode("--lr", "1e30", "-o", "fresh")), ("7000.png", "not finite")),
    Case("loss-not-finite-warm-start", then(photo("7040.png", good_copy),
                                            command(*encode("--lr", "1e30", "--lr-after-first", "1e30", "--init",
                                                            "previous"))),
         ("7040.png", "not finite")),
    Case("loss-not-finite-key", then(photo("7040.png", good_copy),
                                     command(*encode("--key-optimizer", "adam", "--lr-after-first", "1e30"))),
         ("7040.png", "not finite")),
    # a damaged options record is not overwritten
    Case("options-record-not-json", then(photo("7040.png", good_copy), write("photos/encode.options.json", b"[1, 2")),
         ("encode.options.json", "not valid JSON")),
    # aging weights
    Case("weights-convert-random-bytes", then(generator_file("random.bin", lambda p, G: p.write_bytes(RANDOM)),
                                              command("weights", "convert", "random.bin", "out")), ("random.bin",)),
    Case("weights-convert-missing", command("weights", "convert", "missing.pkl", "out"), ("missing.pkl",)),
    Case("weights-convert-nan", then(generator_file("nan-gen", nan_generator),
                                     command("weights", "convert", "nan-gen", "out")), ("nan-gen", "NaN")),
    Case("weights-convert-bad-seeds", command("weights", "convert", "gen", "out", "--seeds", "x"), ("--seeds",)),
    Case("weights-download-negative-retries",
         command("weights", "download", "stylegan2-ffhq-1024", "--cache", "cache", "--retries", "-1"), ("--retries",)),
    Case("weights-download-bad-sha256",
         command("weights", "download", "http://127.0.0.1:9/x.pkl", "--cache", "cache", "--sha256", "abc"),
         ("--sha256",)),
    Case("weights-download-unknown-name", command("weights", "download", "no-such-model", "--cache", "cache"),
         ("no-such-model",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, work, G):
    args = case.build(work, G)
    before = snapshot(work)
    out = cli(args, cwd=work)
    assert_user_error(out, *case.needles)
    assert snapshot(work) == before  # nothing finished lost or rewritten, nothing new written


def test_the_table_covers_the_issue():
    ids = {c.id for c in CASES}
    for opt in FLOAT_OPTIONS:
        assert {f"{opt}=nan", f"{opt}=inf", f"{opt}=-1"} <= ids
    assert {"--steps=0", "--batch=0", "missing-folder", "no-photos", "non-square-image", "corrupt-image",
            "generator-missing", "generator-random-bytes", "generator-text-file", "generator-holds-nan",
            "loss-not-finite"} <= ids


# ---------------------------------------------------------------------------------------------
# Re-runs: the stage's own outputs are not photos; nothing to do writes nothing


def test_rerun_of_a_plain_folder_has_nothing_to_do_and_writes_nothing(work):
    photos = work / "photos"
    assert (photos / pl.CHART_NAME).is_file()  # the chart sits among the photos
    before = snapshot(work)
    out = cli(encode(), cwd=work)
    assert out.exit_code == 0 and "nothing to do: all 4 photos" in out.stdout, out.stderr
    assert out.stderr == ""
    assert snapshot(work) == before
    # other options: still nothing to do, and the record keeps the options that made the latents
    out = cli(encode("--lr", "0.1", "--steps", "7"), cwd=work)
    assert out.exit_code == 0 and "nothing to do" in out.stdout, out.stderr
    assert snapshot(work) == before
    (run,) = pl.read_options(photos).values()
    assert run["options"]["lr"] == 0.2 and run["options"]["steps"] == 4


def test_options_are_recorded_per_run_that_encoded(work, G):
    photos = work / "photos"
    key_a = next(iter(pl.read_options(photos)))
    save_photos(G, photos, 2, first_age=7100, seed=1)
    out = cli(encode("--lr", "0.1"), cwd=work)
    assert out.exit_code == 0 and "encoded 2 photos (4 already done)" in out.stdout, out.stderr
    runs = pl.read_options(photos)
    assert len(runs) == 2 and key_a in runs
    (key_b,) = set(runs) - {key_a}
    log = pl.read_log(photos / pl.LOG_NAME)
    assert {a: r["options"] for a, r in log.items()} == {7000: key_a, 7010: key_a, 7020: key_a, 7030: key_a,
                                                          7100: key_b, 7110: key_b}
    assert runs[key_a]["options"]["lr"] == 0.2 and runs[key_b]["options"]["lr"] == 0.1
    assert runs[key_b]["options"]["generator_sha256"] == runs[key_a]["options"]["generator_sha256"]
    assert pl.options_key(runs[key_b]["options"]) == key_b  # the key is the digest of what is recorded


# ---------------------------------------------------------------------------------------------
# Inputs that used to be misread


def test_sixteen_bit_png_is_encoded_as_its_eight_bit_original(tmp_path, G):
    save_generator(G, tmp_path / "gen")
    save_photos(G, tmp_path / "eight", 2)
    (tmp_path / "sixteen").mkdir()
    for p in sorted((tmp_path / "eight").glob("*.png")):
        grey = np.asarray(Image.open(p).convert("L"))
        Image.fromarray(grey).save(p)  # 8-bit grey
        Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "sixteen" / p.name)  # same image, 16-bit
    assert Image.open(tmp_path / "sixteen" / "7000.png").mode.startswith("I;16")
    eight = pl.PhotoTargets(sorted((tmp_path / "eight").glob("*.png")), RES)[[0, 1]]
    sixteen = pl.PhotoTargets(sorted((tmp_path / "sixteen").glob("*.png")), RES)[[0, 1]]
    assert torch.equal(eight, sixteen) and sixteen.mean() < 0.9  # not near-white
    for name in ("eight", "sixteen"):
        out = cli(encode(data=name), cwd=tmp_path)
        assert out.exit_code == 0, out.stderr
    for age in (7000, 7010):
        np.testing.assert_array_equal(np.load(tmp_path / "eight" / "latents" / f"{age}.npy"),
                                      np.load(tmp_path / "sixteen" / "latents" / f"{age}.npy"))


def test_damaged_latents_are_encoded_again_and_said_so(work, G):
    lat = work / "photos" / "latents"
    good = {a: np.load(lat / f"{a}.npy") for a in (7000, 7010, 7020, 7030)}
    data = (lat / "7010.npy").read_bytes()
    (lat / "7010.npy").write_bytes(data[: len(data) // 2])  # truncated
    np.save(lat / "7020.npy", np.zeros((3, 5), np.float32))  # another generator's shape
    nan = good[7030].copy()
    nan[0, 0] = np.nan
    np.save(lat / "7030.npy", nan)
    untouched = snapshot(lat)["7000.npy"]
    out = cli(encode(), cwd=work)
    assert out.exit_code == 0 and "encoded 3 photos (1 already done)" in out.stdout, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 3, out.stderr
    for age, why in ((7010, "unreadable latent"), (7020, "shape (3, 5)"), (7030, "NaN")):
        (line,) = [s for s in lines if f"{age}.npy" in s]
        assert why in line and f"encoding {age}.png again" in line
    # redone in the batches of the first run: the same latents, bit for bit
    for a, want in good.items():
        np.testing.assert_array_equal(np.load(lat / f"{a}.npy"), want)
    assert snapshot(lat)["7000.npy"] == untouched
