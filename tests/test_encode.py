"""Encode stage: projector (recovery, warm starts, Z clipping, OOM), files (resume, shards), CLI errors.

Everything runs on the CPU with a 32 px random-weight generator whose images are scaled to the
range of real photos; its targets are images G(w) of known latents.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from aging.cli.encode import encode
from aging.encode import chains as ch
from aging.encode import pipeline as pl
from aging.encode import projector as pj
from aging.encode.losses import ImageLoss, parse_loss, psnr
from aging.encode.options import ProjectOptions, SequenceOptions
from aging.stylegan import to_uint8
from aging.stylegan.checkpoints import save_generator
from tests.tiny import photo_generator


pytestmark = pytest.mark.usefixtures("one_thread")

PROJECT, SEQUENCE = ProjectOptions(), SequenceOptions()  # the defaults


def sequence(steps=PROJECT.steps, smooth=0.0, **kw):
    """SequenceOptions with the projection's ``steps`` and ``smooth`` and the others of ``kw``
    (chains, ``init="previous"``, unless ``kw`` says otherwise; keys and fills: test_encode_keys.py)."""
    kw.setdefault("init", "previous")
    return replace(SEQUENCE, project=replace(PROJECT, steps=steps, smooth=smooth), **kw)


@pytest.fixture(scope="module")
def G():
    return photo_generator(32)  # 32 px, w_dim 16, 8 W+ layers


@pytest.fixture(scope="module")
def w_std(G):
    return pj.w_stats(G)[1]


@pytest.fixture(scope="module")
def mse():
    return ImageLoss("mse", resolution=32)


def random_ws(G, n, seed, psi=0.7):
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G.mapping(z, truncation_psi=psi)


def slow_sequence(G, n, w_std, *, seed=3, motion=0.1):
    """W+ latents moving in a straight line by ``motion`` w-stds per component over ``n`` photos."""
    w0, w1 = random_ws(G, 2, seed)
    d = (w1 - w0) / (w1 - w0).square().mean().sqrt() * w_std * motion
    return w0 + torch.linspace(0, 1, n)[:, None, None] * d  # [n, num_ws, w_dim]


def step_variance(ws, skip=()):
    """Variance of the photo-to-photo W+ steps (``skip``: photos whose step from the previous is left out)."""
    steps = ws.diff(dim=0)
    keep = [k for k in range(len(steps)) if k + 1 not in skip]
    steps = steps[keep]
    return (steps - steps.mean(0)).square().mean().item()


# ---------------------------------------------------------------------------------------------
# Projector


def test_recovery_psnr_after_default_steps(G, w_std, mse):
    w_true = random_ws(G, 4, seed=1)
    with torch.no_grad():
        targets = G.synthesis(w_true)
        start = G.synthesis(pj.mean_latents(G, 4, "wplus"))
    assert psnr(start, targets).max() < 22  # the mean face is far from every target
    proj = pj.project(G, targets, loss=mse, w_std=w_std)  # default steps, lr, schedule, space
    assert proj.steps == PROJECT.steps and proj.ws.shape == (4, G.num_ws, G.w_dim)
    got = psnr(proj.images, targets)
    assert got.min() >= 30, got
    assert torch.allclose(got, proj.info["psnr"])
    with torch.no_grad():  # the returned latents are the ones that reconstruct
        assert torch.allclose(psnr(G.synthesis(proj.ws), targets), got, atol=1e-3)
    assert (proj.history[-1] < proj.history[0] / 10).all()


def test_plan_chains():
    assert ch.plan_chains(8, 3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert ch.plan_chains(9, 3) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert ch.plan_chains(2, 4) == [[0], [1]]
    assert ch.plan_chains(0, 4) == []
    chains = ch.plan_chains(780, 16)
    assert len(chains) == 16 and sum(map(len, chains)) == 780 and chains[-1][-1] == 779
    # max_length: more chains than the batch when the batch's chains would be too long
    assert ch.plan_chains(8, 2, max_length=3) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert ch.plan_chains(8, 3, max_length=5) == ch.plan_chains(8, 3)
    chains = ch.plan_chains(780, 16, max_length=20)
    assert len(chains) == 39 and max(map(len, chains)) == 20 and sum(map(len, chains)) == 780
    with pytest.raises(ValueError):
        ch.plan_chains(8, 2, max_length=0)
    # the CLI's --min-chain default is the library's
    assert next(o.default for o in encode.params if o.name == "min_chain") == SEQUENCE.min_chain
    # min_length: fewer chains than the batch rather than chains too short to pay for their heads
    assert ch.plan_chains(8, 3, min_length=4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert ch.plan_chains(12, 16, min_length=8) == [list(range(12))]
    assert len(ch.plan_chains(780, 16, min_length=8)) == 16
    assert ch.plan_chains(8, 3, max_length=2, min_length=4) == ch.plan_chains(8, 4)  # max_length wins


def test_previous_init_needs_a_third_of_the_steps_and_is_smoother(G, w_std, mse):
    n, batch, steps = 12, 2, 300
    with torch.no_grad():
        targets = G.synthesis(slow_sequence(G, n, w_std))

    def run(init, after, smooth=0.0, heads="best"):
        options = sequence(steps, smooth, batch=batch, init=init, heads=heads, steps_after_first=after, min_chain=1)
        out = list(pj.project_sequence(G, targets, loss=mse, options=options, w_std=w_std))
        ws = torch.zeros(n, G.num_ws, G.w_dim)
        loss = torch.zeros(n)
        for idx, p in out:
            ws[idx], loss[idx] = p.ws, p.losses["total"]
        return out, ws, loss

    out, ws_mean, loss_mean = run("mean", steps)
    assert [idx for idx, _ in out] == [[k, k + 1] for k in range(0, n, 2)]
    assert all(p.steps == steps and p.info["init"] == "mean" for _, p in out)
    # two chains side by side (heads="best"): the first head alone, the second from its latent
    # (the root) and from the mean, keeping the lower loss; then a batch holds the next photo of
    # each chain, started from its predecessor
    out, ws_prev, loss_prev = run("previous", steps // 3)
    assert [idx for idx, _ in out] == [[0], [6]] + [[k, k + 6] for k in range(1, 6)]
    assert [p.info["init"] for _, p in out][:1] == ["mean"] and out[1][1].info["init"] in (["head"], ["mean"])
    assert [p.info["init"] for _, p in out][2:] == ["previous"] * 5
    assert [p.steps for _, p in out] == [steps, steps] + [steps // 3] * 5
    assert loss_prev[6] <= loss_mean[6] * 1.01  # a head is no worse than from the mean
    warm = [k for k in range(n) if k not in (0, 6)]
    assert loss_prev[warm].mean() <= loss_mean[warm].mean(), (loss_prev, loss_mean)
    assert step_variance(ws_prev) < step_variance(ws_mean)
    # the smoothness term makes the steps smoother still, and the reconstructions stay near-exact
    _, ws_smooth, loss_smooth = run("previous", steps // 3, smooth=0.001)
    assert step_variance(ws_smooth) < 0.75 * step_variance(ws_prev)
    assert step_variance(ws_smooth, skip=[6]) < 0.25 * step_variance(ws_mean)  # within the chains
    assert (10 * torch.log10(4 / loss_smooth)).min() > 45  # PSNR (dB) of the mse loss
    # heads="mean": both heads from the mean in one batch (as init mean): the chains meet with a
    # larger jump; heads="root": the second head from the root only
    out, ws_heads, loss_heads = run("previous", steps // 3, heads="mean")
    assert [idx for idx, _ in out] == [[0, 6]] + [[k, k + 6] for k in range(1, 6)]
    assert [p.info["init"] for _, p in out] == ["mean"] + ["previous"] * 5
    torch.testing.assert_close(loss_heads[[0, 6]], loss_mean[[0, 6]])
    jump = lambda ws: (ws[6] - ws[5]).square().mean().item()  # noqa: E731
    assert jump(ws_prev) < 0.5 * jump(ws_heads)
    assert step_variance(ws_heads, skip=[6]) < step_variance(ws_mean)  # within the chains
    out, ws_root, loss_root = run("previous", steps // 3, heads="root")
    assert [idx for idx, _ in out] == [[0], [6]] + [[k, k + 6] for k in range(1, 6)]
    assert [p.info["init"] for _, p in out] == ["mean", "head"] + ["previous"] * 5
    assert jump(ws_root) < 0.5 * jump(ws_heads)


def test_warm_start_continues_from_given_starts(G, w_std, mse):
    """``starts`` and ``root`` resume chains: continuing from finished photos repeats the run exactly."""
    with torch.no_grad():
        targets = G.synthesis(slow_sequence(G, 4, w_std))
    kw = dict(loss=mse, options=sequence(20, batch=2, steps_after_first=5, heads="root", min_chain=1), w_std=w_std)
    full = {tuple(idx): p for idx, p in pj.project_sequence(G, targets, **kw)}
    assert list(full) == [(0,), (2,), (1, 3)]
    root = full[(0,)].latents[0]
    head = list(pj.project_sequence(G, targets, plan=ch.ChainPlan([[2]], starts=[None], root=root), **kw))
    assert [i for i, _ in head] == [[2]] and head[0][1].info["init"] == "head"
    torch.testing.assert_close(head[0][1].ws, full[(2,)].ws, rtol=0, atol=0)
    rest = list(pj.project_sequence(G, targets, plan=ch.ChainPlan([[1], [3]], starts=[root, head[0][1].latents[0]]),
                                    **kw))
    assert [i for i, _ in rest] == [[1, 3]] and rest[0][1].steps == 5
    torch.testing.assert_close(rest[0][1].ws, full[(1, 3)].ws, rtol=0, atol=0)


def test_a_photo_stops_once_its_loss_has_stopped_improving(G, w_std, mse):
    """patience: a converged photo stops (after its cool-down) and the batch goes on without it;
    each photo's optimisation is its own, so stopping one changes nothing for the others."""
    w_true = random_ws(G, 2, seed=11)
    with torch.no_grad():
        targets = G.synthesis(w_true)
    init = torch.stack([w_true[0], pj.mean_latents(G, 1, "wplus")[0]])  # photo 0 starts at its solution
    options = replace(PROJECT, steps=150, lr=0.1, patience=10, tol=1e-3, cooldown=5)
    proj = pj.project(G, targets, loss=mse, options=options, init=init, w_std=w_std)
    steps = proj.info["photo_steps"].tolist()
    assert steps[0] <= 1 + options.patience + options.cooldown + 1 < steps[1]
    assert len(proj.history) == max(steps) and (proj.history[steps[0]:, 0] == proj.history[steps[0] - 1, 0]).all()
    torch.testing.assert_close(proj.ws[0], w_true[0])  # a zero gradient: Adam does not move it
    alone = pj.project(G, targets[1:], loss=mse, options=options, init=init[1:], w_std=w_std)
    assert abs(int(alone.info["photo_steps"][0]) - steps[1]) <= 2  # the same photo on its own (up to rounding)
    assert abs(float(alone.info["psnr"][0] - proj.info["psnr"][1])) < 0.5
    # without patience every photo runs all the steps; the early stop costs photo 1 little
    full = pj.project(G, targets, loss=mse, options=replace(options, patience=0), init=init, w_std=w_std)
    assert full.info["photo_steps"].tolist() == [150, 150] and len(full.history) == 150
    assert proj.info["psnr"][1] > full.info["psnr"][1] - 3


def test_heads_start_from_the_nearest_finished_head():
    assert ch.head_sources([0, 16, 32, 48]) == [(0, None), (2, 0), (1, 0), (2, 32)]
    assert ch.head_sources([0]) == [(0, None)] and ch.head_sources([]) == []
    found = ch.head_sources(list(range(0, 160, 10)))  # 16 chains: levels 0..4, each head from a head done before
    levels = [lv for lv, _ in found]
    assert sorted(levels) == [0, 1, 2, 2, 3, 3, 3, 3] + [4] * 8
    for (lv, src), head in zip(found[1:], range(10, 160, 10)):
        assert levels[src // 10] < lv and abs(head - src) <= 80
    assert sum(abs(h - s) for (_, s), h in zip(found[1:], range(10, 160, 10))) < 0.3 * sum(range(10, 160, 10))
    plan = ch.plan_sequence(8, replace(SEQUENCE, init="previous", batch=3, min_chain=1, heads="nearest"))
    assert plan.chains == [[0, 1, 2], [3, 4, 5], [6, 7]] and plan.sources == [None, 0, 3] and plan.levels == [0, 1, 2]
    # resumed with photos 0..3 finished: chain 2's head starts from photo 3, loaded from disk
    resumed = ch.plan_resume([True] * 4 + [False] * 4, replace(SEQUENCE, init="previous", batch=3, min_chain=1,
                                                                heads="nearest",
                                                                extrapolate=1.0), lambda i: f"latent {i}")
    assert resumed.chains == [[4, 5], [6, 7]] and resumed.starts == ["latent 3", None]
    assert resumed.befores == [None, None] and resumed.levels == [-1, 2] and resumed.finished == {3: "latent 3"}
    resumed = ch.plan_resume([True] * 5 + [False] * 3, replace(SEQUENCE, init="previous", batch=3, min_chain=1,
                                                                extrapolate=1.0),
                             lambda i: f"latent {i}")
    assert resumed.starts[0] == "latent 4" and resumed.befores[0] == "latent 3"  # extrapolated from 3 and 4


def test_warm_start_is_extrapolated_from_the_chains_last_step(G, w_std, mse, monkeypatch):
    with torch.no_grad():
        targets = G.synthesis(slow_sequence(G, 4, w_std))
    real, inits = pj.project, []

    def spy(G_, t, **kw):
        inits.append(None if kw["init"] is None else kw["init"].clone())
        return real(G_, t, **kw)

    monkeypatch.setattr(pj, "project", spy)
    options = sequence(20, batch=1, steps_after_first=5, extrapolate=0.5)
    out = [p for _, p in pj.project_sequence(G, targets, loss=mse, options=options, w_std=w_std)]
    assert inits[0] is None and [len(p) for p in out] == [1, 1, 1, 1]
    torch.testing.assert_close(inits[1][0], out[0].latents[0], rtol=0, atol=0)  # one latent: nothing to extrapolate
    for k in (2, 3):
        last, before = out[k - 1].latents[0], out[k - 2].latents[0]
        torch.testing.assert_close(inits[k][0], last + 0.5 * (last - before), rtol=0, atol=0)


def test_w_space_is_one_w_per_photo(G, w_std, mse):
    targets = G.synthesis(random_ws(G, 2, seed=5)[:, :1].expand(-1, G.num_ws, -1))
    proj = pj.project(G, targets, loss=mse, options=replace(PROJECT, space="w", steps=60), w_std=w_std)
    assert proj.latents.shape == (2, G.w_dim)
    assert (proj.ws == proj.ws[:, :1]).all()
    assert (proj.history[-1] < proj.history[0]).all()


def test_truncated_normal_and_stochastic_clip():
    gen = torch.Generator().manual_seed(0)
    x = pj.truncated_normal((20000,), 1.0, generator=gen)
    assert x.abs().max() <= 1.0 and abs(x.mean().item()) < 0.02
    assert 0.50 < x.std().item() < 0.56  # std of N(0, 1) truncated to [-1, 1] is 0.538
    z = torch.tensor([[-5.0, 0.3, 2.5, -0.9, 9.0]])
    mask = pj.stochastic_clip_(z, 1.0, generator=gen)
    assert mask.tolist() == [[True, False, True, False, True]]
    assert z.abs().max() <= 1.0 and z[0, 1] == 0.3 and z[0, 3] == -0.9


def test_z_space_with_stochastic_clipping_stays_inside(G, w_std, mse):
    k = 1.0
    targets = G.synthesis(random_ws(G, 3, seed=7, psi=1.0))
    seen = []

    def watch(step, per_photo):
        seen.append(per_photo.clone())

    z_space = replace(PROJECT, space="z", clip=k, steps=40, lr=0.1)
    proj = pj.project(G, targets, loss=mse, options=z_space, w_std=w_std,
                      generator=torch.Generator().manual_seed(0), callback=watch)
    assert proj.latents.shape == (3, G.z_dim) and len(seen) == 40
    assert proj.latents.abs().max() <= k
    with torch.no_grad():
        torch.testing.assert_close(proj.ws, G.mapping(proj.latents))
    assert (proj.losses["total"] < proj.history[0]).all()  # gradients reach z through the mapping
    # without the bound the same optimisation leaves [-k, k]: the clipping is what keeps it inside
    free = pj.project(G, targets, loss=mse, options=replace(z_space, clip=50.0), w_std=w_std,
                      generator=torch.Generator().manual_seed(0))
    assert free.latents.abs().max() > k


def test_batch_halves_on_out_of_memory(G, w_std, mse, monkeypatch):
    real = pj.project
    seen = []

    def fake(G_, targets, **kw):
        seen.append(len(targets))
        if len(targets) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")
        return real(G_, targets, **kw)

    monkeypatch.setattr(pj, "project", fake)
    targets = G.synthesis(random_ws(G, 6, seed=2))
    halved = []
    options = sequence(3, batch=4, heads="mean", min_chain=1, steps_after_first=2)
    out = list(pj.project_sequence(G, targets, loss=mse, options=options, w_std=w_std,
                                   on_oom=lambda old, new: halved.append((old, new))))
    assert halved == [(4, 2)]
    # chains [0, 1], [2, 3], [4, 5]: the three heads (from the mean, one batch) fail, so 2, then
    # 1; then the chains' next photos at the smaller size
    assert [idx for idx, _ in out] == [[0, 2], [4], [1, 3], [5]]
    assert seen == [3, 2, 1, 2, 1]
    assert [p.info["init"] for _, p in out] == ["mean", "mean", "previous", "previous"]

    def broken(G_, targets, **kw):
        raise RuntimeError("something else")

    monkeypatch.setattr(pj, "project", broken)
    with pytest.raises(RuntimeError, match="something else"):  # only out-of-memory is handled
        list(pj.project_sequence(G, targets, loss=mse, options=sequence(3, batch=8), w_std=w_std))


def test_parse_loss():
    assert parse_loss("lpips-vgg") == {"lpips-vgg": 1.0}
    assert parse_loss("0.5*mse+VGG") == {"mse": 0.5, "vgg": 1.0}
    for bad in ("l1", "mse+mse", "0*mse", "mse+"):
        with pytest.raises(ValueError):
            parse_loss(bad)


# ---------------------------------------------------------------------------------------------
# Files: resume, shards


def write_photos(G, folder: Path, n, w_std, *, first_age=7000, step=10):
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        frames = to_uint8(G.synthesis(slow_sequence(G, n, w_std)))
    ages = [first_age + step * k for k in range(n)]
    for age, frame in zip(ages, frames):
        Image.fromarray(frame).save(folder / f"{age}.png")
    return ages


def run_kw(space="wplus", heads="best", steps=30, steps_after_first=10, batch=3, dist=(0, 1)):
    """Keyword arguments of ``encode_photos``: a short run, no progress bar."""
    project = replace(PROJECT, steps=steps, space=space, lr=0.2)
    extra = {}
    if heads == "nearest":  # with early stops and extrapolated warm starts (from disk when resumed)
        project, extra = replace(project, patience=4, cooldown=2), dict(extrapolate=1.0, steps_near=steps)
    options = replace(SEQUENCE, project=project, steps_after_first=steps_after_first, batch=batch, min_chain=1,
                      init="previous", heads=heads, seed=4, **extra)
    return dict(options=options, dist=dist, progress=False)

class _Batches(list):
    """The age_days of each batch's log lines, in order (``real_append``: the unpatched writer)."""

    real_append = None


def kill_after_batches(monkeypatch, out: Path, kill_after: int) -> tuple[list[str], _Batches]:
    """Patch :mod:`aging.io` as a kill would meet it: every ``save_npy`` is noted in ``writes``
    (relative to ``out``), and right after the ``kill_after``-th batch's log lines (a batch's last
    write) a ``KeyboardInterrupt`` comes. Returns ``(writes, batches)``; restore the log writer with
    ``batches.real_append``."""
    import aging.io

    writes, batches = [], _Batches()
    real_save, batches.real_append = aging.io.save_npy, aging.io.append_lines

    def counting_save(path, array):
        writes.append(Path(path).relative_to(out).as_posix())
        real_save(path, array)

    def append_then_kill(path, lines):
        batches.real_append(path, lines)
        batches.append([json.loads(line)["age_days"] for line in lines])
        if len(batches) == kill_after:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(aging.io, "save_npy", counting_save)
    monkeypatch.setattr(aging.io, "append_lines", append_then_kill)
    return writes, batches


@pytest.mark.parametrize("space,kill_after,heads", [("wplus", 1, "best"), ("wplus", 2, "best"), ("z", 2, "best"),
                                                   ("wplus", 1, "mean"), ("wplus", 1, "root"),
                                                   ("wplus", 2, "nearest"), ("wplus", 4, "nearest")])
def test_resume_writes_each_latent_once_and_matches_an_uninterrupted_run(G, w_std, mse, tmp_path, monkeypatch,
                                                                         space, kill_after, heads):
    import aging.io

    ages = write_photos(G, tmp_path / "subj" / "aligned", 8, w_std)
    full = pl.find_photos(tmp_path / "subj", out=tmp_path / "full")
    pl.encode_photos(G, full, loss=mse, **run_kw(space=space, heads=heads))

    part = pl.find_photos(tmp_path / "subj", out=tmp_path / "part")
    writes, batches = kill_after_batches(monkeypatch, tmp_path / "part", kill_after)
    with pytest.raises(KeyboardInterrupt):
        pl.encode_photos(G, part, loss=mse, **run_kw(space=space, heads=heads))
    monkeypatch.setattr(aging.io, "append_lines", batches.real_append)
    # chains [0, 1, 2], [3, 4, 5], [6, 7]. heads="mean": the three heads in one batch from the
    # mean, then the second photo of each chain; "root": the first head alone, then the other
    # heads from its latent; "best": as root, each of those from the mean too, the better kept
    first = [ages[0], ages[3], ages[6]]
    if heads == "mean":
        expect = [first, [ages[1], ages[4], ages[7]]]
        init_of = ["mean", "previous", "previous", "mean", "previous", "previous", "mean", "previous"]
    elif heads == "nearest":  # level by level: 3 from 0, then 6 from 3 (loaded from disk when killed after 2)
        expect = [first[:1], first[1:2], first[2:], [ages[1], ages[4], ages[7]]]
        init_of = ["mean", "previous", "previous", "near", "previous", "previous", "near", "previous"]
    else:
        expect = [first[:1], first[1:]]
        init_of = ["mean", "previous", "previous", "head", "previous", "previous", "head", "previous"]
    assert batches == expect[:kill_after]
    written = sorted(p.name for p in (tmp_path / "part" / "latents").iterdir())
    assert written == sorted(f"{a}.npy" for b in expect[:kill_after] for a in b)
    summary = pl.encode_photos(G, part, loss=mse, **run_kw(space=space, heads=heads))
    assert summary["encoded"] == 8 - len(written) and summary["skipped"] == len(written)

    lat = [w for w in writes if w.startswith("latents/")]
    assert sorted(lat) == sorted(f"latents/{a}.npy" for a in ages)  # each exactly once
    for a in ages:
        np.testing.assert_array_equal(np.load(tmp_path / "part" / "latents" / f"{a}.npy"),
                                      np.load(tmp_path / "full" / "latents" / f"{a}.npy"))
        assert np.load(tmp_path / "part" / "latents" / f"{a}.npy").shape == (G.num_ws, G.w_dim)
        assert (tmp_path / "part" / "recon" / f"{a}.png").is_file()
    log = [json.loads(line) for line in (tmp_path / "part" / pl.LOG_NAME).read_text().splitlines()]
    assert sorted(r["age_days"] for r in log) == ages
    assert [r["age_days"] for r in log[:3]] == first  # written batch by batch
    init = {r["age_days"]: r["init"] for r in log}
    if heads == "best":  # whichever start ended lower
        assert init[ages[3]] in ("head", "mean") and init[ages[6]] in ("head", "mean")
        init_of[3], init_of[6] = init[ages[3]], init[ages[6]]
    assert [init[a] for a in ages] == init_of
    full_log = pl.read_log(tmp_path / "full" / pl.LOG_NAME)
    assert {r["age_days"]: r["steps"] for r in log} == {a: r["steps"] for a, r in full_log.items()}
    assert all(0 < r["steps"] <= (10 if r["init"] == "previous" else 60 if heads == "best" else 30) for r in log)
    assert all(r["space"] == space and np.isfinite(r["losses"]["total"]) for r in log)
    leftovers = [p for p in (tmp_path / "part").rglob(".*")]
    assert not leftovers  # no temporary files
    # a third run has nothing to do and touches nothing
    writes.clear()
    assert pl.encode_photos(G, part, loss=mse, **run_kw(space=space, heads=heads))["encoded"] == 0 and not writes


def test_shard_and_dist_env():
    for n, world in [(10, 3), (2, 4), (7, 1)]:
        shares = [pl.shard(n, r, world) for r in range(world)]
        assert shares[0][0] == 0 and shares[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))
        assert max(b - a for a, b in shares) - min(b - a for a, b in shares) <= 1
    assert pl.dist_env({}) == (0, 1, 0)
    assert pl.dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    assert pl.dist_env({"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == (1, 2, 1)
    with pytest.raises(pl.EncodeError):
        pl.dist_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_ranks_write_only_their_share(G, w_std, mse, tmp_path):
    ages = write_photos(G, tmp_path / "subj", 5, w_std)  # a plain folder of photos
    photos = pl.find_photos(tmp_path / "subj")
    assert photos.source == tmp_path / "subj" and photos.ages == ages
    s1 = pl.encode_photos(G, photos, loss=mse, **run_kw(steps=5, steps_after_first=2, batch=1, dist=(1, 2)))
    assert s1["share"] == [3, 5]
    assert sorted(p.name for p in (tmp_path / "subj" / "latents").iterdir()) == [f"{a}.npy" for a in ages[3:]]
    s0 = pl.encode_photos(G, photos, loss=mse, **run_kw(steps=5, steps_after_first=2, batch=1, dist=(0, 2)))
    assert s0["share"] == [0, 3] and s0["encoded"] == 3
    log = pl.read_log(tmp_path / "subj" / pl.LOG_NAME)
    assert sorted(log) == ages
    # each share starts from the mean: no warm start across ranks
    assert [log[a]["init"] for a in ages] == ["mean", "previous", "previous", "mean", "previous"]
    assert [log[a]["rank"] for a in ages] == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------------------------------------
# CLI


@pytest.fixture(scope="module")
def gen_path(tmp_path_factory, G):
    path = tmp_path_factory.mktemp("gen") / "tiny"
    save_generator(G, path)
    return path


def invoke(*args, env=None):
    return CliRunner().invoke(encode, [str(a) for a in args], env=env)


def test_cli_encodes_then_has_nothing_to_do(G, w_std, gen_path, tmp_path):
    ages = write_photos(G, tmp_path / "anna" / "aligned", 4, w_std)
    args = [tmp_path / "anna", "-g", gen_path, "--loss", "mse", "--steps", "20", "--steps-after-first", "5",
            "--batch", "2", "--min-chain", "1", "--init", "previous", "--device", "cpu", "-q"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert "encoded 4 photos" in r.output
    assert sorted(int(p.stem) for p in (tmp_path / "anna" / "latents").glob("*.npy")) == ages
    runs = pl.read_options(tmp_path / "anna")  # one run, under the key of every log line
    assert len(runs) == 1
    key, run = next(iter(runs.items()))
    opts = run["options"]
    assert opts["steps"] == 20 and opts["loss"] == {"mse": 1.0} and opts["resolution"] == 32
    assert {r["options"] for r in pl.read_log(tmp_path / "anna" / pl.LOG_NAME).values()} == {key}
    # the chart: PSNR and the latent step from the previous photo, over age
    assert (tmp_path / "anna" / pl.CHART_NAME).stat().st_size > 10_000 and "encode.png" in r.output
    rep = pl.encode_report(tmp_path / "anna")
    assert list(rep["ages"]) == ages and rep["init"][:2] == ["mean", "previous"] and rep["init"][3] == "previous"
    assert rep["init"][2] in ("head", "mean")  # --heads best (default): from the first photo or the mean, the better
    lat = [np.load(tmp_path / "anna" / "latents" / f"{a}.npy") for a in ages]
    assert np.isnan(rep["steps"][0])
    np.testing.assert_allclose(rep["steps"][1:], [np.sqrt(np.mean((b - a) ** 2)) for a, b in zip(lat, lat[1:])],
                               rtol=1e-6)
    assert (rep["psnr"] > 20).all()
    r = invoke(*args)
    assert r.exit_code == 0 and "nothing to do" in r.output
    # every photo from the mean, in batches of consecutive photos; a missing photo is redone
    (tmp_path / "anna" / "latents" / f"{ages[2]}.npy").unlink()
    r = invoke(*args, "--init", "mean", "-o", tmp_path / "mean")
    assert r.exit_code == 0 and "encoded 4 photos" in r.output, r.output
    r = invoke(*args)
    assert r.exit_code == 0 and "encoded 1 photo (3 already done)" in r.output, r.output
    log = [json.loads(line) for line in (tmp_path / "mean" / pl.LOG_NAME).read_text().splitlines()]
    assert [r["init"] for r in log] == ["mean"] * 4 and [r["batch"] for r in log] == [2, 2, 2, 2]
    # the default --min-chain 8: 4 photos make one chain, not two
    r = invoke(*[a for a in args if a not in ("--min-chain", "1")], "-o", tmp_path / "one")
    assert r.exit_code == 0, r.output
    log = [json.loads(line) for line in (tmp_path / "one" / pl.LOG_NAME).read_text().splitlines()]
    assert [r["init"] for r in log] == ["mean", "previous", "previous", "previous"]
    # --chain-length 1 --heads mean: every photo a chain of its own, from the mean, as --init mean
    r = invoke(*args, "--chain-length", "1", "--heads", "mean", "-o", tmp_path / "short")
    assert r.exit_code == 0 and "encoded 4 photos" in r.output, r.output
    assert [r["options"]["chain_length"] for r in pl.read_options(tmp_path / "short").values()] == [1]
    for a in ages:
        np.testing.assert_array_equal(np.load(tmp_path / "short" / "latents" / f"{a}.npy"),
                                      np.load(tmp_path / "mean" / "latents" / f"{a}.npy"))
    # the latents form a latent dataset of the usual format
    from aging.latents import load_subject

    subj = load_subject(tmp_path / "anna")
    assert list(subj.ages) == ages and subj.latents.shape == (4, G.num_ws, G.w_dim)


def one_line_error(r, *needles):
    assert r.exit_code != 0
    assert "Traceback" not in r.output
    lines = [line for line in r.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), r.output
    for needle in needles:
        assert needle in lines[0], r.output


def test_cli_bad_input_is_one_clear_line(G, w_std, gen_path, tmp_path):
    good = tmp_path / "good"
    write_photos(G, good, 2, w_std)
    base = ["-g", gen_path, "--loss", "mse", "--steps", "2", "-q", "--device", "cpu"]

    bad = tmp_path / "unreadable"
    write_photos(G, bad, 2, w_std)
    (bad / "7010.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    one_line_error(invoke(bad, *base), "7010.png", "unreadable image")
    assert not (bad / "latents").exists() or not any((bad / "latents").iterdir())  # checked before any work

    rect = tmp_path / "rect"
    rect.mkdir()
    Image.new("RGB", (40, 32)).save(rect / "7000.png")
    one_line_error(invoke(rect, *base), "7000.png", "40x32", "square")

    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGB", (16, 16)).save(small / "7000.png")
    one_line_error(invoke(small, *base), "7000.png", "working resolution")

    named = tmp_path / "named"
    named.mkdir()
    Image.new("RGB", (32, 32)).save(named / "me.png")
    one_line_error(invoke(named, *base), "me.png", "age in days")

    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(invoke(empty, *base), "no photos")
    one_line_error(invoke(tmp_path / "missing", *base), "missing", "no such folder")

    one_line_error(invoke(good, "-g", tmp_path / "nope.pkl", "--loss", "mse", "-q"), "nope.pkl")
    one_line_error(invoke(good, *base, "--loss", "l2"), "unknown loss term")
    one_line_error(invoke(good, *base, "--resolution", "64"), "exceeds")

    # a perceptual loss with no weights given and none cached
    cache = tmp_path / "cache"
    env = {"AGING_CACHE": str(cache), "TORCH_HOME": str(cache / "torch")}
    one_line_error(invoke(good, "-g", gen_path, "-q", "--device", "cpu", env=env), "VGG16 weights", "--vgg-weights")
    one_line_error(invoke(good, "-g", gen_path, "--vgg-weights", tmp_path / "vgg.pth", "-q"), "vgg.pth", "not found")
    assert not (good / "latents").exists()


def test_subject_folder_is_read_through_its_manifest(G, w_std, tmp_path):
    from aging.fetch.manifest import ManifestRow, write_manifest

    subj = tmp_path / "anna"
    ages = write_photos(G, subj / "aligned", 4, w_std)
    rows = [ManifestRow(index=k, photo=k, age_days=a, status="kept", reason="", time_s=k, first_frame=k,
                        last_frame=k, frame=k, file=f"aligned/{a}.png") for k, a in enumerate(ages)]
    rows[1].status, rows[1].file = "excluded", ""  # excluded since its aligned file was written
    rows.insert(2, ManifestRow(index=9, photo=None, age_days=None, status="no_face", reason="no face", time_s=9,
                               first_frame=9, last_frame=9, frame=9))
    write_manifest(subj / "manifest.csv", rows)
    photos = pl.find_photos(subj)
    assert photos.ages == [ages[0], ages[2], ages[3]] and photos.out == subj
    assert photos.paths == [subj / "aligned" / f"{a}.png" for a in photos.ages]

    (subj / "aligned" / f"{ages[3]}.png").unlink()
    with pytest.raises(pl.EncodeError, match=f"{ages[3]}.png: listed as kept"):
        pl.find_photos(subj)
    (subj / "manifest.csv").write_text("index,photo\n0,0\n")
    with pytest.raises(pl.EncodeError, match="not an aging fetch manifest"):
        pl.find_photos(subj)


FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.mark.skipif(not (FIXTURES / "faces").is_dir() or not (FIXTURES / "stylegan2" / "tiny.pkl").is_file(),
                    reason="shared fixtures not present (../shared/fixtures)")
def test_cli_on_real_faces_and_a_real_pickle(tmp_path):
    """Aligned 1024 px photos (JPEG) and NVIDIA's pickle format: the files a user really has."""
    import shutil

    faces = sorted((FIXTURES / "faces").glob("*.jpg"))[:3]
    for f in faces:
        shutil.copy(f, tmp_path / f.name)
    r = invoke(tmp_path, "-g", FIXTURES / "stylegan2" / "tiny.pkl", "--loss", "mse", "--steps", "40",
               "--steps-after-first", "10", "--batch", "2", "--device", "cpu", "-q", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    ages = [int(f.stem) for f in faces]
    log = pl.read_log(tmp_path / "out" / pl.LOG_NAME)
    assert sorted(log) == ages
    for a in ages:
        lat = np.load(tmp_path / "out" / "latents" / f"{a}.npy")
        assert lat.shape == (10, 64) and lat.dtype == np.float32 and np.isfinite(lat).all()
        assert Image.open(tmp_path / "out" / "recon" / f"{a}.png").size == (64, 64)
        assert log[a]["losses"]["mse"] < 0.1 and log[a]["psnr"] > 15  # a face, not noise
        # the tiny generator's 64 px reconstruction is seldom a face to dlib: a distance only where it is one
        found = log[a]["recon_face_found"]
        assert found in (True, False) and (log[a]["identity_distance"] is None) == (not found)
        assert found is False or 0 <= log[a]["identity_distance"] < 2
    r = invoke(tmp_path, "-g", FIXTURES / "stylegan2" / "tiny.pkl", "--loss", "mse", "--steps", "2", "--batch", "2",
               "--device", "cpu", "-q", "--no-identity", "-o", tmp_path / "plain")
    assert r.exit_code == 0, r.output
    assert all("identity_distance" not in rec for rec in pl.read_log(tmp_path / "plain" / pl.LOG_NAME).values())


@pytest.mark.skipif(not (FIXTURES / "faces").is_dir(), reason="../shared/fixtures absent")
def test_identity_of_reconstructions_is_dlibs_descriptor_distance(tmp_path):
    """encode.jsonl's identity: the photo's person a year later is near (< 0.6), another person
    far, a blank reconstruction has no face (no distance)."""
    faces = FIXTURES / "faces"
    photos = [faces / "6940.jpg"] * 3
    recon = np.stack([np.asarray(Image.open(faces / "7390.jpg").convert("RGB")),
                      np.asarray(Image.open(FIXTURES / "others" / "obama_a.jpg").convert("RGB").resize((256, 256))),
                      np.zeros((256, 256, 3), np.uint8)])
    writer = pl._BatchWriter(pl.find_photos(faces, tmp_path / "out"), SequenceOptions(), (0, 1))
    same, other, blank = writer._identity(photos, recon)
    assert same["recon_face_found"] and 0 < same["identity_distance"] < 0.6
    assert other["recon_face_found"] and other["identity_distance"] > 0.6
    assert blank == {"recon_face_found": False, "identity_distance": None}
    assert writer.distances == pytest.approx([same["identity_distance"], other["identity_distance"]], abs=1e-4)
