"""Encode stage, ``init="interpolate"`` (issue 16): key photos tracked one from the other, the photos
between them from the keys' interpolation; each photo kept at its best latent; resumed runs.

CPU, the 32 px random-weight generator of ``tests/test_encode.py``; targets are images G(w) of
latents moving slowly in a straight line (a time-lapse).
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from aging.encode import chains as ch
from aging.encode import pipeline as pl
from aging.encode import projector as pj
from aging.encode.options import EncodeError, ProjectOptions, SequenceOptions
from tests.test_encode import (G, kill_after_batches, mse, random_ws, slow_sequence, w_std,  # noqa: F401
                                write_photos)

pytestmark = pytest.mark.usefixtures("one_thread")

PROJECT, SEQUENCE = ProjectOptions(), SequenceOptions()


def keyed(steps=120, steps_key=40, steps_fill=10, polish_first=0, **kw) -> SequenceOptions:
    """``init="interpolate"`` options for short runs (no L-BFGS polish of the first key unless asked)."""
    return replace(SEQUENCE, project=replace(PROJECT, steps=steps), init="interpolate", steps_key=steps_key,
                   steps_fill=steps_fill, polish_first=polish_first, **kw)


def test_the_defaults_are_keys_and_fills():
    assert SEQUENCE.init == "interpolate" and PROJECT.keep_best
    assert SEQUENCE.key.steps == SEQUENCE.steps_key and SEQUENCE.key.lr == SEQUENCE.lr_after_first
    assert SEQUENCE.fill.steps == SEQUENCE.steps_fill and SEQUENCE.fill.lr == SEQUENCE.lr_fill
    polish = SEQUENCE.polish
    assert SEQUENCE.polish_first > 0 and polish.steps == SEQUENCE.polish_first
    assert polish.optimizer == "lbfgs" and polish.smooth == 0 and polish.keep_best
    assert replace(SEQUENCE, polish_first=0).polish is None
    assert replace(SEQUENCE, project=replace(PROJECT, space="z")).polish is None  # L-BFGS does not work in z
    for bad in (dict(key_every=0), dict(steps_key=0), dict(steps_fill=0), dict(lr_fill=0.0), dict(polish_first=-1),
                dict(polish_first=2.5)):
        with pytest.raises(EncodeError, match=next(iter(bad))):
            replace(SEQUENCE, **bad)


def test_key_photos_every_nth_and_the_last():
    assert ch.key_photos(0, 20, 8) == [0, 8, 16, 19]
    assert ch.key_photos(0, 17, 8) == [0, 8, 16]
    assert ch.key_photos(5, 1, 8) == [5] and ch.key_photos(3, 2, 8) == [3, 4]
    assert ch.key_photos(0, 0, 8) == []
    assert ch.key_photos(0, 3, 1) == [0, 1, 2]


def test_plan_keys_fresh_and_resumed():
    o = replace(SEQUENCE, init="interpolate", key_every=4, batch=3)
    fresh = ch.plan_sequence(12, o)
    assert isinstance(fresh, ch.KeyPlan)
    assert fresh.keys == fresh.todo == [0, 4, 8, 11]
    assert fresh.fills == [[1, 2, 3], [5, 6, 7], [9, 10]] and fresh.latents == {} and fresh.photos == 12

    loaded = []

    def load(i):
        loaded.append(i)
        return f"latent {i}"

    done = [True] * 6 + [False] * 6  # keys 0 and 4 and photos 1-3, 5 finished
    plan = ch.plan_resume(done, o, load, keys=list(range(100, 112)))
    assert plan.todo == [8, 11] and plan.fills == [[6, 7], [9, 10]]  # 6, 7: their planned batch, less 5
    assert plan.latents == {4: "latent 4"} and loaded == [4]  # key 8 starts from 4; 6, 7 lie between 4 and 8
    assert plan.keys_of == list(range(100, 112)) and plan.photos == 6
    extra = ch.plan_resume(done, replace(o, extrapolate=1.0), load)
    assert extra.latents == {0: "latent 0", 4: "latent 4"}  # key 8 goes on from 4 by the step 0 -> 4
    keys_done = [i in (0, 4, 8, 11) for i in range(12)]  # a run killed among the photos between keys
    plan = ch.plan_resume(keys_done, o, load)
    assert plan.todo == [] and plan.fills == fresh.fills
    assert sorted(plan.latents) == [0, 4, 8, 11]
    # a shard of a longer sequence plans its own keys
    shard = ch.plan_resume([False] * 5, o, load, first=20)
    assert shard.keys == [20, 24] and shard.fills == [[21, 22, 23]]


def test_keep_best_never_ends_worse_than_it_started(G, w_std, mse):
    w_true = random_ws(G, 2, seed=5)
    with torch.no_grad():
        targets = G.synthesis(w_true)
    start = w_true + 0.01 * w_std * torch.randn(w_true.shape, generator=torch.Generator().manual_seed(1))
    wild = replace(PROJECT, steps=3, lr=3.0, warmup=0.0, decay=0.0)  # three huge steps away from the answer
    best = pj.project(G, targets, loss=mse, options=wild, init=start, w_std=w_std)
    last = pj.project(G, targets, loss=mse, options=replace(wild, keep_best=False), init=start, w_std=w_std)
    assert torch.equal(best.latents, start)  # the start was the best seen
    assert torch.equal(best.losses["total"], best.history[0])  # its loss, the one before the first update
    assert bool((last.losses["total"] > 10 * best.losses["total"]).all())  # the last latent is far worse
    assert last.history.shape == best.history.shape == (3, 2)


def run_sequence(G, targets, mse, w_std, options, plan=None):
    out = {}
    for idx, proj in pj.project_sequence(G, targets, loss=mse, options=options, w_std=w_std, plan=plan):
        out[tuple(idx)] = proj
    return out


def test_keys_then_fills_started_between_their_keys(G, w_std, mse):
    ws = slow_sequence(G, 10, w_std, motion=0.3)
    with torch.no_grad():
        targets = G.synthesis(ws)
    o = keyed(key_every=4, batch=3, steps_fill=1, lr_fill=1e-9)  # the fills stay at their starts
    runs = run_sequence(G, targets, mse, w_std, o)
    assert list(runs) == [(0,), (4,), (8,), (9,), (1, 2, 3), (5, 6, 7)]  # keys one at a time, then the fills
    assert [runs[k].info["init"] for k in runs] == ["mean", "key", "key", "key", "fill", "fill"]
    steps = [int(runs[k].info["photo_steps"].sum()) for k in runs]
    assert steps[0] == 120 and steps[4:] == [3, 3]  # Adam: exactly its steps
    assert all(40 <= s < 40 + 25 for s in steps[1:4])  # L-BFGS: a line search under way may end a few later
    lat = {k[0]: runs[k].latents[0] for k in runs if len(k) == 1}
    for batch in ((1, 2, 3), (5, 6, 7)):
        a, b = batch[0] - 1, batch[-1] + 1
        for m, i in enumerate(batch):
            expect = torch.lerp(lat[a], lat[b], (i - a) / (b - a))
            torch.testing.assert_close(runs[batch].latents[m], expect, rtol=0, atol=1e-6)
    # the time of each photo is its key (age), not its position: an uneven gap moves the fills
    plan = replace(ch.plan_sequence(10, o), keys_of=[0, 1, 2, 30, 40, 50, 60, 70, 80, 90])
    uneven = run_sequence(G, targets, mse, w_std, o, plan)
    lat = {k[0]: uneven[k].latents[0] for k in uneven if len(k) == 1}
    torch.testing.assert_close(uneven[(1, 2, 3)].latents[0], torch.lerp(lat[0], lat[4], 1 / 40), rtol=0, atol=1e-6)


def test_keys_and_fills_reach_independent_quality_with_a_fraction_of_the_steps(G, w_std, mse):
    """On a slow time-lapse, keys every 4 photos and fills between them reconstruct every photo about
    as well as encoding each from the mean, with under a third of the Adam steps, and move smoothly."""
    ws = slow_sequence(G, 13, w_std, motion=0.3)
    with torch.no_grad():
        targets = G.synthesis(ws)
    alone = pj.project(G, targets, loss=mse, options=replace(PROJECT, steps=150), w_std=w_std)
    runs = run_sequence(G, targets, mse, w_std, keyed(steps=150, steps_key=60, steps_fill=20, lr_fill=0.01,
                                                       key_every=4, batch=4))
    loss = torch.zeros(13)
    lat = torch.zeros_like(alone.latents)
    steps = 0
    for idx, proj in runs.items():
        loss[list(idx)] = proj.losses["total"]
        lat[list(idx)] = proj.latents
        steps += int(proj.info["photo_steps"].sum())
    assert steps == 150 + 3 * 60 + 9 * 20 and steps < 13 * 150 / 3
    assert float(loss.mean()) <= 1.5 * float(alone.losses["total"].mean())
    smooth = lat.diff(dim=0).square().mean().sqrt()
    jumpy = alone.latents.diff(dim=0).square().mean().sqrt()
    assert smooth < 0.5 * jumpy  # one basin, no jumps between independent solutions


def test_fills_keep_their_keys_interpolation_when_it_is_best(G, w_std, mse):
    """A fill whose start is exact (its target G of the keys' interpolation) stays there: keep_best."""
    ws = slow_sequence(G, 3, w_std, motion=0.5)
    with torch.no_grad():
        targets = G.synthesis(ws)
    plan = ch.KeyPlan(keys=[0, 2], todo=[], fills=[[1]], latents={0: ws[0], 2: ws[2]})
    runs = run_sequence(G, targets, mse, w_std, keyed(lr_fill=0.5, steps_fill=5), plan)
    torch.testing.assert_close(runs[(1,)].latents[0], ws[1], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kill_after", [1, 3, 5])
def test_interpolate_resume_writes_each_latent_once_and_matches_an_uninterrupted_run(
        G, w_std, mse, tmp_path, monkeypatch, kill_after):
    import aging.io

    ages = write_photos(G, tmp_path / "subj" / "aligned", 9, w_std)
    options = keyed(steps=30, steps_key=10, steps_fill=5, key_every=4, batch=2, extrapolate=1.0, seed=2)
    kw = dict(options=options, progress=False)
    full = pl.find_photos(tmp_path / "subj", out=tmp_path / "full")
    pl.encode_photos(G, full, loss=mse, **kw)

    part = pl.find_photos(tmp_path / "subj", out=tmp_path / "part")
    writes, batches = kill_after_batches(monkeypatch, tmp_path / "part", kill_after)
    with pytest.raises(KeyboardInterrupt):
        pl.encode_photos(G, part, loss=mse, **kw)
    monkeypatch.setattr(aging.io, "append_lines", batches.real_append)
    # keys 0, 4, 8 one at a time, then the photos between them two at a time (a batch may span two gaps)
    order = [[ages[0]], [ages[4]], [ages[8]], [ages[1], ages[2]], [ages[3], ages[5]], [ages[6], ages[7]]]
    assert batches == order[:kill_after]
    summary = pl.encode_photos(G, part, loss=mse, **kw)
    done = sum(map(len, order[:kill_after]))
    assert summary["encoded"] == 9 - done and summary["skipped"] == done

    assert sorted(w for w in writes if w.startswith("latents/")) == sorted(f"latents/{a}.npy" for a in ages)
    for a in ages:
        np.testing.assert_array_equal(np.load(tmp_path / "part" / "latents" / f"{a}.npy"),
                                      np.load(tmp_path / "full" / "latents" / f"{a}.npy"))
    log = pl.read_log(tmp_path / "part" / pl.LOG_NAME)
    init = [log[a]["init"] for a in ages]
    assert init == ["mean", "fill", "fill", "fill", "key", "fill", "fill", "fill", "key"]
    full_log = pl.read_log(tmp_path / "full" / pl.LOG_NAME)
    assert {a: r["losses"] for a, r in log.items()} == {a: r["losses"] for a, r in full_log.items()}


def test_fills_halve_their_batch_on_out_of_memory(G, w_std, mse, monkeypatch):
    real, seen, halved = pj.project, [], []

    def fake(G_, targets, **kw):
        seen.append(len(targets))
        if len(targets) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
        return real(G_, targets, **kw)

    monkeypatch.setattr(pj, "project", fake)
    with torch.no_grad():
        targets = G.synthesis(slow_sequence(G, 9, w_std))
    out = list(pj.project_sequence(G, targets, loss=mse, options=keyed(steps=3, steps_key=2, steps_fill=2,
                                                                       key_every=8, batch=4),
                                   w_std=w_std, on_oom=lambda old, new: halved.append((old, new))))
    assert halved == [(4, 2)] and seen == [1, 1, 4, 2, 2, 2, 1]  # planned [1..4], [5, 6, 7]; then 2 at a time
    assert [idx for idx, _ in out] == [[0], [8], [1, 2], [3, 4], [5, 6], [7]]
    assert [p.info["batch"] for _, p in out] == [1, 1, 2, 2, 2, 1]


def test_cli_default_encodes_keys_then_fills_and_records_it(G, w_std, tmp_path):
    from click.testing import CliRunner

    from aging.cli.encode import encode
    from aging.stylegan.checkpoints import save_generator

    save_generator(G, tmp_path / "gen")
    ages = write_photos(G, tmp_path / "anna" / "aligned", 4, w_std)
    args = [str(a) for a in (tmp_path / "anna", "-g", tmp_path / "gen", "--loss", "mse", "--steps", "20",
                             "--steps-key", "8", "--steps-fill", "4", "--polish-first", "6", "--device", "cpu", "-q")]
    r = CliRunner().invoke(encode, args)
    assert r.exit_code == 0 and "encoded 4 photos" in r.output, r.output
    log = pl.read_log(tmp_path / "anna" / pl.LOG_NAME)
    assert [log[a]["init"] for a in ages] == ["mean", "fill", "fill", "key"]  # keys: the first and the last
    assert [log[a]["steps"] for a in ages][1:] == [4, 4, 8] and 20 + 6 <= log[ages[0]]["steps"] < 20 + 6 + 25
    (run,) = pl.read_options(tmp_path / "anna").values()
    opts = run["options"]
    assert opts["init"] == "interpolate" and opts["key_every"] == 8 and opts["steps_key"] == 8
    assert opts["steps_fill"] == 4 and opts["lr_fill"] == SEQUENCE.lr_fill and opts["keep_best"] is True
    assert opts["polish_first"] == 6
    r = CliRunner().invoke(encode, args)
    assert r.exit_code == 0 and "nothing to do" in r.output, r.output
    r = CliRunner().invoke(encode, args[:1] + ["--key-every", "0"] + args[1:])
    assert r.exit_code != 0 and "--key-every" in r.output


def test_lbfgs_photo_by_photo_beats_adam_on_the_same_evaluations(G, w_std, mse):
    w_true = random_ws(G, 2, seed=3)
    with torch.no_grad():
        targets = G.synthesis(w_true)
    start = w_true + 0.3 * w_std * torch.randn(w_true.shape, generator=torch.Generator().manual_seed(1))
    lbfgs = replace(PROJECT, steps=40, optimizer="lbfgs")
    both = pj.project(G, targets, loss=mse, options=lbfgs, init=start, w_std=w_std)
    adam = pj.project(G, targets, loss=mse, options=replace(PROJECT, steps=40, lr=0.05), init=start, w_std=w_std)
    assert bool((both.losses["total"] < 0.1 * adam.losses["total"]).all())
    evals = both.info["photo_steps"].tolist()
    assert all(40 <= e < 40 + 25 for e in evals) and both.history.shape == (max(evals), 2)
    assert bool((both.history[-1] < both.history[0]).all())  # the objective fell from the start
    alone = pj.project(G, targets[1:], loss=mse, options=lbfgs, init=start[1:], w_std=w_std)
    torch.testing.assert_close(alone.latents[0], both.latents[1], rtol=0, atol=0)  # each photo its own optimisation
    with pytest.raises(EncodeError, match="lbfgs"):
        replace(PROJECT, optimizer="lbfgs", space="z")
    with pytest.raises(EncodeError, match="optimizer"):
        replace(PROJECT, optimizer="sgd")
    z_keys = replace(SEQUENCE, project=replace(PROJECT, space="z"))
    assert z_keys.key.optimizer == "adam" and SEQUENCE.key.optimizer == "lbfgs"


def test_the_first_key_is_polished_with_lbfgs_after_its_adam_steps(G, w_std, mse):
    """polish_first: the first key runs its Adam steps, then L-BFGS from their result; its loss is
    the polished one (never above Adam's), its history and steps are both runs'; the keys after it
    start from the polished latent."""
    ws = slow_sequence(G, 5, w_std, motion=0.3)
    with torch.no_grad():
        targets = G.synthesis(ws)
    plain = run_sequence(G, targets, mse, w_std, keyed(steps=60, steps_key=10, key_every=4, steps_fill=2))
    polished = run_sequence(G, targets, mse, w_std, keyed(steps=60, steps_key=10, key_every=4, steps_fill=2,
                                                          polish_first=30))
    root, adam = polished[(0,)], plain[(0,)]
    assert root.info["init"] == "mean"
    evals = int(root.info["photo_steps"][0]) - 60
    assert 30 <= evals < 30 + 25 and root.history.shape == (60 + evals, 1) and root.steps == 60 + 30
    torch.testing.assert_close(root.history[:60], adam.history, rtol=0, atol=0)  # the same Adam steps first
    assert float(root.losses["total"][0]) < 0.9 * float(adam.losses["total"][0])
    assert float(root.history[60, 0]) <= float(adam.history[:, 0].min()) * (1 + 1e-5)  # L-BFGS went on from there
    again = pj.project(G, targets[:1], loss=mse, options=replace(PROJECT, steps=30, optimizer="lbfgs"),
                       init=adam.latents, w_std=w_std)
    torch.testing.assert_close(root.latents, again.latents, rtol=0, atol=0)
    # key 4 starts from the polished first key: a different start than without the polish
    assert not torch.equal(polished[(4,)].latents, plain[(4,)].latents)
    assert [k for k in polished] == [(0,), (4,), (1, 2, 3)]


def test_smooth_key_pulls_a_key_toward_the_key_before_it(G, w_std, mse):
    ws = slow_sequence(G, 5, w_std, motion=1.0)
    with torch.no_grad():
        targets = G.synthesis(ws)
    steps = {}
    for weight in (0.0, 1.0):
        runs = run_sequence(G, targets, mse, w_std, keyed(steps=60, steps_key=30, key_every=4, smooth_key=weight,
                                                           steps_fill=1, lr_fill=1e-9))
        assert list(runs)[:2] == [(0,), (4,)] and runs[(4,)].info["init"] == "key"
        steps[weight] = float((runs[(4,)].latents[0] - runs[(0,)].latents[0]).square().mean().sqrt())
        if weight:  # the objective is the loss plus the weighted squared step (in units of w's std)
            assert "smooth" in runs[(4,)].losses and float(runs[(4,)].losses["smooth"][0]) > 0
    assert steps[1.0] < 0.5 * steps[0.0]


def test_lbfgs_ends_at_the_best_latent_when_the_objective_stops_being_finite(G, w_std, mse, monkeypatch):
    """A line search cannot go on from a NaN: L-BFGS ends the photo there, at the best latent seen;
    a photo whose start is not finite ends unchanged (the pipeline then reports it), no exception."""
    w_true = random_ws(G, 1, seed=2)
    with torch.no_grad():
        targets = G.synthesis(w_true)
    start = w_true + 0.3 * w_std * torch.randn(w_true.shape, generator=torch.Generator().manual_seed(4))
    options = replace(PROJECT, steps=40, optimizer="lbfgs")
    calls = []
    real = pj._Objective.__call__

    def nan_after_eight(self, latents, index=None):
        out = real(self, latents, index)
        calls.append(1)
        if index is not None and len(calls) > 8:  # the L-BFGS evaluations (the final call has no index)
            return (out[0] * float("nan"),) + tuple(out[1:])
        return out

    monkeypatch.setattr(pj._Objective, "__call__", nan_after_eight)
    proj = pj.project(G, targets, loss=mse, options=options, init=start, w_std=w_std)
    monkeypatch.undo()
    assert int(proj.info["photo_steps"][0]) == 9  # eight finite evaluations, then the NaN one
    finite = proj.history[:8, 0]
    assert bool(torch.isfinite(finite).all()) and float(finite[-1]) < float(finite[0])
    torch.testing.assert_close(proj.losses["total"][0], finite.min(), rtol=1e-5, atol=0)  # the best seen
    huge = pj.project(G, targets, loss=mse, options=options, init=torch.full_like(start, float("nan")),
                      w_std=w_std)
    assert not bool(torch.isfinite(huge.losses["total"]).all()) and int(huge.info["photo_steps"][0]) == 1
