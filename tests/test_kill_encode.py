"""``aging encode`` killed (SIGKILL) at chosen atomic writes, again and again, then finished (issue 10).

A run of 6 photos in 2 chains (``--batch 2 --min-chain 1``) writes in this order
(``AGING_KILL_AT_WRITE=N`` counts a process's atomic writes, ``N-`` stops with the N-th one's
temporary complete but not renamed; see :mod:`aging.io`)::

    encode.options.json      the options record, before the first batch's files (once per key)
    recon/7000.png           batch [7000] (the first chain's head, from the mean)
    latents/7000.npy         ... then the batch's encode.jsonl lines (an append, not counted)
    recon/7030.png           batch [7030] (the second chain's head)
    latents/7030.npy
    recon/7010.png, recon/7040.png, latents/7010.npy, latents/7040.npy      batch [7010, 7040]
    recon/7020.png, recon/7050.png, latents/7020.npy, latents/7050.npy      batch [7020, 7050]

(``--space z`` writes ``z/<age>.npy`` between a batch's reconstructions and its latents.) The
same command is killed at one point after another, each run resuming what the previous left,
then run to the end. After every kill, the photos that count as finished are final (equal to an
uninterrupted run's); at the end every photo has its latent, reconstruction and log line, no
temporary is left, and the outputs equal, bit for bit, those of an uninterrupted run.
"""

from __future__ import annotations

import pytest
from PIL import Image

from aging import io as aio
from aging.encode import pipeline as pl
from aging.stylegan.checkpoints import save_generator
from tests.harness import contents, hidden_leftovers, run_aging
from tests.tiny import photo_generator, save_photos

RES = 16
ARGS = ["--loss", "mse", "--steps", "12", "--steps-after-first", "4", "--batch", "2", "--min-chain", "1",
        "--init", "previous", "--device", "cpu", "-q"]
OWN = {pl.LOG_NAME, pl.OPTIONS_NAME, pl.CHART_NAME}  # files compared by content, not by bytes


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    G = photo_generator(RES)
    save_generator(G, root / "gen")
    ages = save_photos(G, root / "photos", 6)
    return root, G, ages


def check_complete(out, G, ages, space):
    """Every photo finished (latent valid, reconstruction, log line under a recorded options key);
    no temporaries."""
    assert hidden_leftovers(out) == []
    log = pl.read_log(out / pl.LOG_NAME)
    runs = pl.read_options(out)
    assert sorted(log) == ages
    assert {r["options"] for r in log.values()} <= set(runs)
    assert sorted(p.name for p in (out / "latents").iterdir()) == [f"{a}.npy" for a in ages]
    assert sorted(p.name for p in (out / "recon").iterdir()) == [f"{a}.png" for a in ages]
    for a in ages:
        aio.read_latent(out / "latents" / f"{a}.npy", (G.num_ws, G.w_dim))
        if space == "z":
            aio.read_latent(out / "z" / f"{a}.npy", (G.z_dim,))
        assert Image.open(out / "recon" / f"{a}.png").size == (RES, RES)
    return log, runs


def finished(out, ages):
    """Ages whose latent, reconstruction and log line are all there."""
    log = pl.read_log(out / pl.LOG_NAME)
    return [a for a in ages if a in log and (out / "latents" / f"{a}.npy").is_file()
            and (out / "recon" / f"{a}.png").is_file()]


def files(*ages, z=False, log=True):
    """The visible files a killed run leaves when the photos ``ages`` have their outputs."""
    out = {pl.OPTIONS_NAME} | ({pl.LOG_NAME} if log else set())
    for a in ages:
        out |= {f"latents/{a}.npy", f"recon/{a}.png"} | ({f"z/{a}.npy"} if z else set())
    return out


# --init interpolate (the default): keys 7000 and 7050, then the photos between them two at a time::
#
#     encode.options.json, recon/7000.png, latents/7000.npy, recon/7050.png, latents/7050.npy,
#     recon/7010.png, recon/7020.png, latents/7010.npy, latents/7020.npy, recon/7030.png, ...
KEY_ARGS = [a for a in ARGS if a not in ("--init", "previous")] + ["--steps-key", "10", "--steps-fill", "4",
                                                                 "--polish-first", "5"]

# Per space (or init), the successive runs: (kill point, the visible files it leaves, whether it finds photos
# an interrupted run left without their log line); the last run (None) finishes.
SEQUENCES = {
    "wplus": [
        ("1", {pl.OPTIONS_NAME}, False),  # killed right after the options record
        ("1-", {pl.OPTIONS_NAME}, False),  # the record is there: its first write is recon/7000.png, not renamed
        ("2", files(7000, log=False), False),  # latents/7000.npy written, its log line not
        ("5-", files(7000, 7030), True),  # 7000 redone; then recon/7010.png in flight
        ("7", files(7000, 7030, 7010, 7040) | {"recon/7020.png", "recon/7050.png", "latents/7020.npy"}, False),
        (None, files(7000, 7010, 7020, 7030, 7040, 7050), True),  # 7020 redone with 7050, in their batch
    ],
    "z": [
        ("6", files(7000, z=True) | {"recon/7030.png", "z/7030.npy"}, False),  # z/7030 written, its latent not
        (None, files(7000, 7010, 7020, 7030, 7040, 7050, z=True), False),
    ],
    "interpolate": [
        ("3", files(7000, log=False), False),  # the first key's latent written, its log line not
        ("4-", files(7000) | {"recon/7050.png"}, True),  # 7000 redone; then the last key's latent in flight
        ("3", files(7000, 7050) | {"recon/7010.png"}, False),  # 7050 redone (no latent); a fill's recon written
        (None, files(7000, 7010, 7020, 7030, 7040, 7050), False),
    ],
}


@pytest.mark.parametrize("space", list(SEQUENCES))
def test_killed_again_and_again_then_finished_equals_an_uninterrupted_run(setup, space):
    root, G, ages = setup
    name, (space, extra) = space, ("wplus", KEY_ARGS) if space == "interpolate" else (space, ARGS)
    ref, out = root / f"ref-{name}", root / f"out-{name}"
    proc = run_aging(["encode", "photos", "-g", "gen", "-o", ref.name, "--space", space, *extra], cwd=root)
    assert proc.returncode == 0, proc.stderr  # the uninterrupted run
    args = ["encode", "photos", "-g", "gen", "-o", out.name, "--space", space, *extra]
    skip = lambda rel: rel in OWN  # noqa: E731
    ref_files = contents(ref, skip)
    done_before: list[int] = []
    for kill_at, expect, orphans in SEQUENCES[name]:
        proc = run_aging(args, cwd=root, kill_at=kill_at)
        assert proc.returncode == (0 if kill_at is None else -9), proc.stderr  # -9: SIGKILL at that write
        # photos whose latent a killed run wrote without their log line are said to be redone
        assert ("(an interrupted run?)" in proc.stderr) == orphans, proc.stderr
        visible = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")}
        assert visible - {pl.CHART_NAME} == expect
        # the temporary of a write in flight; the next run removes it
        assert len(hidden_leftovers(out)) == (kill_at or "").endswith("-")
        done = finished(out, ages)
        assert set(done_before) <= set(done)  # nothing finished is lost
        for a in done:  # and what counts as finished is final
            assert (out / "latents" / f"{a}.npy").read_bytes() == ref_files[f"latents/{a}.npy"]
        done_before = done

    log, runs = check_complete(out, G, ages, space)
    ref_log, ref_runs = check_complete(ref, G, ages, space)
    # the same options (the record holds no paths of the output folder), so the same key
    assert set(runs) == set(ref_runs) and len(runs) == 1
    # latents, z and reconstructions bit for bit those of the uninterrupted run; the same losses
    assert contents(out, skip) == ref_files
    assert {a: r["losses"] for a, r in log.items()} == {a: r["losses"] for a, r in ref_log.items()}
    assert {a: r["init"] for a, r in log.items()} == {a: r["init"] for a, r in ref_log.items()}
