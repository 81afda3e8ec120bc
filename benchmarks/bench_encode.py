"""Benchmark the encoder: the study's setting vs this toolkit's defaults, on a synthetic time-lapse.

Both settings project the same kind of photos: images G(w_t) of latents that move slowly along a
straight line (a time-lapse of one face), decoded by a random-weight generator in the FFHQ
configuration at ``--resolution`` (z = w = 512, 8 mapping layers, channel_base 32768,
channel_max 512, num_fp16_res 4, conv_clamp 256; ``--preset tiny`` shrinks it for CPU runs).
Random weights cost exactly what trained ones do (the ToRGB weights are scaled so that images have
a photo-like standard deviation of 0.5, and ``w_avg`` is measured). The perceptual loss is the LPIPS-style VGG16
distance at 256 px (or the generator's resolution if smaller) with **random VGG16 weights
instead of the ImageNet-trained ones** (none can be downloaded here): same cost, but the loss
values are only comparable between the two settings of one run, not with LPIPS numbers.

Settings:

``study``     batch 1, ``--study-steps`` (1000) Adam steps per photo, ``mean`` init, float32:
              each photo encoded independently, as in the original study, on every photo
              (``--study-photos`` N: N photos spread over the sequence). 1000 steps per photo take
              about 50 s on 2 CPU cores (64 px tiny preset), so with ``--study-cache FILE`` each
              finished photo (loss, seconds) is kept there, keyed by everything it depends on,
              and a later run (or one that was interrupted) encodes only the photos missing.
              ``--study-batch K`` encodes K photos at a time (Adam's updates are per element, so
              each photo still follows its own optimisation, up to float rounding).
``defaults``  the toolkit's defaults (:class:`~aging.encode.options.SequenceOptions`: keys every 8
              photos, the first from the mean with Adam then L-BFGS, the others tracked with L-BFGS,
              the photos between them from the keys' interpolation), with the
              command line's changes (``--batch``, ``--heads``, ..., or any option field with
              ``--set name=value``, for ablations); mixed precision on CUDA (``--no-amp``: off).

Reported: photos/s, seconds per photo, ms per (batch) step, peak memory (CUDA:
``max_memory_allocated``; CPU: the process's peak resident set, which only grows), optimiser
steps per photo (Adam updates and L-BFGS loss evaluations, each one forward and backward pass of
the generator and the loss: the work, whatever the device), the final loss of every photo as a ratio to the
study setting's (mean of the losses, median and max of the per-photo ratios, photos over 1.10x),
and the RMS photo-to-photo W+ step of the defaults within chains, where two chains meet (none when
every photo descends from the first one, as with keys) and the largest single step.

Examples::

    python benchmarks/bench_encode.py --device cuda --resolution 1024 --photos 256 --study-photos 8 \\
        --json benchmarks/results/encode_gpu.json
    python benchmarks/bench_encode.py --device cpu --preset tiny --resolution 64 --photos 64 --batch 4 \\
        --study-cache benchmarks/results/encode_cpu64_study.json --json benchmarks/results/encode_cpu64.json
    python benchmarks/bench_encode.py --device cpu --preset tiny --resolution 64 --photos 64 --batch 4 \\
        --study-cache benchmarks/results/encode_cpu64_study.json --set polish_first=0 --set smooth_key=0.0007  # ablation
    python benchmarks/bench_encode.py --device cpu --preset tiny --resolution 32 --photos 16 --batch 4 \\
        --study-steps 200 --steps 200 --steps-after-first 20  # 1 min; too few steps to judge losses
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from aging import io as aio  # noqa: E402
from aging.devices import resolve_device  # noqa: E402
from aging.encode.losses import ImageLoss, working_resolution  # noqa: E402
from aging.encode.options import HEADS, INITS, ProjectOptions, SequenceOptions, from_values, recorded  # noqa: E402
from aging.encode.projector import project, project_sequence, w_stats  # noqa: E402
from aging.encode.vgg import VGG16Features  # noqa: E402
from aging.stylegan.checkpoints import state_digest  # noqa: E402
from aging.stylegan.networks import Generator  # noqa: E402
from common import peak_memory, reset_peak, sync, write_json  # noqa: E402

SEQUENCE = SequenceOptions()  # the toolkit's defaults
WARM = ("previous", "key", "fill")  # a photo started from photos of its own sequence, not from the mean or a root

PRESETS = {
    "ffhq": dict(z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512, num_fp16_res=4,
                 conv_clamp=256),
    "tiny": dict(z_dim=64, w_dim=64, mapping_layers=4, channel_base=2048, channel_max=64, num_fp16_res=4,
                 conv_clamp=256),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--resolution", type=int, default=1024, help="Generator resolution (power of two).")
    p.add_argument("--preset", choices=sorted(PRESETS), default="ffhq", help="Generator size.")
    p.add_argument("--photos", type=int, default=64, help="Photos of the time-lapse.")
    p.add_argument("--study-photos", type=int, default=0, help="Photos encoded in the study setting [0: all].")
    p.add_argument("--study-steps", type=int, default=1000)
    p.add_argument("--study-batch", type=int, default=1, metavar="K",
                   help="Study setting K photos at a time (each its own optimisation) [1: the study's].")
    p.add_argument("--study-cache", type=Path, default=None, metavar="FILE",
                   help="Keep each study-setting photo's loss and time here; encode only those missing.")
    p.add_argument("--steps", type=int, default=SEQUENCE.project.steps,
                   help="Toolkit: steps of the chains' first photos.")
    p.add_argument("--steps-after-first", type=int, default=SEQUENCE.steps_after_first,
                   help="Toolkit: steps of warm-started batches.")
    p.add_argument("--batch", type=int, default=SEQUENCE.batch, help="Toolkit batch size.")
    p.add_argument("--init", choices=INITS, default=SEQUENCE.init,
                   help="Toolkit: interpolate (keys tracked, photos between from their interpolation), previous "
                        "(chains) or mean.")
    p.add_argument("--heads", choices=HEADS, default=SEQUENCE.heads,
                   help="Toolkit: where the chains' first photos start.")
    p.add_argument("--chain-length", type=int, default=SEQUENCE.chain_length,
                   help="Toolkit: at most this many photos per chain.")
    p.add_argument("--min-chain", type=int, default=SEQUENCE.min_chain,
                   help="Toolkit: fewer chains than the batch where they would be shorter than this.")
    p.add_argument("--lr-after-first", type=float, default=SEQUENCE.lr_after_first,
                   help="Toolkit: peak lr of warm-started photos.")
    p.add_argument("--smooth", type=float, default=SEQUENCE.project.smooth, help="Toolkit: temporal smoothness weight.")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="Toolkit: any field of ProjectOptions or SequenceOptions (repeatable), e.g. patience=0.")
    p.add_argument("--loss-resolution", type=int, default=None, help="Working resolution [256 or the generator's].")
    p.add_argument("--no-amp", action="store_true", help="Toolkit setting in float32 even on CUDA.")
    p.add_argument("--motion", type=float, default=0.3,
                   help="Total movement of the latent over the sequence, in per-component stds of w.")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="Write the results as JSON.")
    p.add_argument("--latents", type=Path, default=None, metavar="OUT",
                   help="Save the toolkit's W+ latents [photos, num_ws, w_dim] here (torch.save), for analysis.")
    return p.parse_args(argv)


def make_generator(args, device) -> tuple[Generator, float]:
    torch.manual_seed(args.seed)
    G = Generator(img_resolution=args.resolution, **PRESETS[args.preset]).eval().requires_grad_(False).to(device)
    mean, std = w_stats(G, seed=args.seed)
    G.mapping.w_avg.copy_(mean)  # a random network never tracked its mean w
    with torch.no_grad():  # photo-like range: ToRGB is linear in its weights, so scale them
        img = G.synthesis(G.mapping(torch.randn(8, G.z_dim, device=device)))
        scale = 0.5 / img.std().item()
        for name, p in G.named_parameters():
            if "torgb" in name and name.endswith("weight"):
                p.mul_(scale)
    return G, std


@torch.no_grad()
def time_lapse(G, n: int, w_std: float, *, motion: float, seed: int) -> torch.Tensor:
    """``n`` targets G(w_t), w_t moving in a straight line by ``motion`` w-stds per component."""
    gen = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(2, G.z_dim, generator=gen).to(G.w_avg.device)
    w0, w1 = G.mapping(z, truncation_psi=0.7)
    d = (w1 - w0) / (w1 - w0).square().mean().sqrt() * w_std * motion
    t = torch.linspace(0, 1, n, device=G.w_avg.device)[:, None, None]
    ws = w0 + t * d  # [n, num_ws, w_dim]
    return torch.cat([G.synthesis(ws[i:i + 8]) for i in range(0, n, 8)]).cpu()  # [n, 3, R, R]


def study_options(args) -> ProjectOptions:
    """The study's setting: ``--study-steps`` per photo from the mean, float32, no early stop."""
    return ProjectOptions(steps=args.study_steps, patience=0, keep_best=False)


def overrides(pairs: list[str]) -> dict:
    """``["patience=0", "heads=root"]`` -> field values, typed as the fields' defaults."""
    defaults = {**asdict(SEQUENCE.project), **{f.name: getattr(SEQUENCE, f.name) for f in fields(SEQUENCE)}}
    out = {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        if name not in defaults or name == "project":
            raise SystemExit(f"--set {pair}: not an option field")
        default = defaults[name]
        if isinstance(default, bool):
            out[name] = {"true": True, "false": False, "1": True, "0": False}[text.lower()]
        else:
            out[name] = None if text == "None" else type(default)(text) if default is not None else int(text)
    return out


def defaults_options(args, amp: bool) -> SequenceOptions:
    """The toolkit's defaults, with the command line's changes."""
    values = {**asdict(SEQUENCE.project), **{f.name: getattr(SEQUENCE, f.name) for f in fields(SEQUENCE)}}
    values.pop("project")
    values.update(steps=args.steps, smooth=args.smooth, fp16=amp, batch=args.batch, init=args.init, heads=args.heads,
                  chain_length=args.chain_length, min_chain=args.min_chain, steps_after_first=args.steps_after_first,
                  lr_after_first=args.lr_after_first, seed=args.seed)
    values.update(overrides(args.overrides))
    return from_values(values)


def study_key(args, G) -> dict:
    """What a study-setting loss depends on (the cache is valid for these only)."""
    keys = ("preset", "resolution", "photos", "study_steps", "loss_resolution", "motion", "seed", "device")
    return dict({k: getattr(args, k) for k in keys}, generator=state_digest(G), torch=torch.__version__)


def read_cache(path: Path | None, key: dict) -> dict:
    """The cached study photos ``{index: {"loss", "seconds", "batch"}}`` made with ``key`` ({} otherwise)."""
    if path is None or not path.exists():
        return {}
    data = aio.read_json(path, what="study cache")
    if not isinstance(data, dict) or data.get("key") != key:
        print(f"{path}: made with other settings; encoding the study setting again")
        return {}
    return {int(i): v for i, v in data.get("photos", {}).items()}


def run_study(G, targets, idx, loss, args, w_std, device) -> dict:
    """The study setting on photos ``idx``, ``--study-batch`` at a time, each finished batch kept in the cache."""
    options = study_options(args)
    key = study_key(args, G)
    cache = read_cache(args.study_cache, key)
    todo = [int(i) for i in idx if int(i) not in cache]
    print(f"study setting: {len(idx) - len(todo)} of {len(idx)} photos cached, {len(todo)} to encode")
    project(G, targets[idx[:1]], loss=loss, options=replace(options, steps=3), w_std=w_std)  # warm-up
    sync(device)
    reset_peak(device)
    k = args.study_batch
    for a in range(0, len(todo), k):
        part = todo[a:a + k]
        t0 = time.perf_counter()
        proj = project(G, targets[part], loss=loss, options=options, w_std=w_std)
        sync(device)
        sec = (time.perf_counter() - t0) / len(part)
        cache.update((i, dict(loss=float(v), seconds=sec, batch=len(part))) for i, v in zip(part, proj.losses["total"]))
        if args.study_cache is not None:  # after every batch: an interrupted run loses one batch at most
            args.study_cache.parent.mkdir(parents=True, exist_ok=True)
            aio.write_json(args.study_cache, dict(key=key, photos={str(i): cache[i] for i in sorted(cache)}))
    timed = [v for v in cache.values() if v.get("seconds") is not None]
    ones = [v["seconds"] for v in timed if v["batch"] == 1] or [v["seconds"] for v in timed]
    sec = float(np.mean(ones))
    return dict(photos=len(idx), timed_photos=len(ones), s_per_photo=sec, photos_per_s=1 / sec,
                ms_per_step=1000 * sec / args.study_steps, photo_steps_per_photo=args.study_steps, batch=k,
                steps=args.study_steps, encoded_now=len(todo),
                peak_memory_bytes=peak_memory(device) if todo else None,
                losses={int(i): cache[int(i)]["loss"] for i in idx})


def run_defaults(G, targets, loss, args, w_std, device, amp: bool) -> dict:
    options = defaults_options(args, amp)
    project(G, targets[:args.batch], loss=loss, options=replace(options.project, steps=3), w_std=w_std)  # warm-up
    sync(device)
    reset_peak(device)
    losses, batch_steps, photo_steps, batches, head_init, steps_of = {}, 0, 0, [], {}, {}
    ws = torch.zeros(len(targets), G.num_ws, G.w_dim)
    t0 = time.perf_counter()
    for idx, proj in project_sequence(G, targets, loss=loss, options=options, w_std=w_std):
        losses.update(zip(idx, (float(v) for v in proj.losses["total"].cpu())))
        if proj.info["init"] not in WARM:  # how each chain's first photo ended up started
            init = proj.info["init"]
            head_init.update(zip(idx, init if isinstance(init, list) else [init] * len(idx)))
        ws[idx] = proj.ws.cpu()
        batch_steps += len(proj.history) * (2 if isinstance(proj.info["init"], list) else 1)  # heads best: two runs
        photo_steps += int(proj.info["photo_steps"].sum())
        steps_of.update(zip(idx, map(int, proj.info["photo_steps"])))
        batches.append(len(idx))
    sync(device)
    sec = time.perf_counter() - t0
    if args.latents is not None:
        args.latents.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(ws=ws, w_std=w_std, losses=losses), args.latents)
    n = len(targets)
    heads = sorted(head_init)  # the photos not started from a predecessor: the chains' first photos
    inner = [i for i in range(1, n) if i not in heads]
    return dict(photos=n, seconds=sec, photos_per_s=n / sec, s_per_photo=sec / n,
                ms_per_step=1000 * sec / batch_steps, photo_steps_per_photo=photo_steps / n, batch=options.batch,
                batches=batches, options=recorded(options), chain_heads=heads, head_init=head_init,
                amp=amp, peak_memory_bytes=peak_memory(device), losses=dict(sorted(losses.items())),
                photo_steps=dict(sorted(steps_of.items())),
                step_rms=step_rms(ws, w_std), step_rms_within_chains=step_rms(ws, w_std, inner),
                step_rms_where_chains_meet=step_rms(ws, w_std, heads[1:]) if len(heads) > 1 else None,
                step_rms_largest=max(step_rms(ws, w_std, [i]) for i in range(1, n)) if n > 1 else float("nan"))


def compare(study: dict, defaults: dict) -> dict:
    """The defaults' final losses against the study setting's, on the photos the study setting encoded."""
    common = sorted(study["losses"])
    s = np.array([study["losses"][i] for i in common])
    d = np.array([defaults["losses"][i] for i in common])
    ratio = d / s
    return dict(photos=common, mean_loss_study=float(s.mean()), mean_loss_defaults=float(d.mean()),
                mean_ratio=float(d.mean() / s.mean()), median_ratio=float(np.median(ratio)),
                max_ratio=float(ratio.max()), worse=int((ratio > 1).sum()), over_1_10=int((ratio > 1.10).sum()),
                ratios=dict(zip(common, map(float, ratio))))


def step_rms(ws: torch.Tensor, w_std: float, at: list[int] | None = None) -> float:
    """Root-mean-square photo-to-photo W+ step of a sequence, in per-component stds of w (``at``:
    only the steps into these photos)."""
    steps = ws.diff(dim=0)  # steps[i - 1]: from photo i - 1 to photo i
    if at is not None:
        if not at:
            return float("nan")
        steps = steps[[i - 1 for i in at]]
    return float(steps.square().mean().sqrt() / w_std)


def report(args, study: dict, defaults: dict, cmp: dict) -> None:
    def line(name, r):
        mem = r["peak_memory_bytes"]
        print(f"{name:9s} photos/s {r['photos_per_s']:.4g}  s/photo {r['s_per_photo']:.4g}  ms/step "
              f"{r['ms_per_step']:.4g} (batch {r['batch']})  peak memory "
              f"{'-' if mem is None else f'{mem / 2**20:.0f} MiB'}  steps per photo "
              f"{r['photo_steps_per_photo']:.1f}  mean final loss {np.mean(list(r['losses'].values())):.4g} "
              f"over {len(r['losses'])} photos")

    line("study", study)
    line("defaults", defaults)
    print(f"study setting timed on {study['timed_photos']} photos (batch 1 where cached so); "
          f"encoded now: {study['encoded_now']}")
    meet = defaults["step_rms_where_chains_meet"]
    print(f"defaults: RMS photo-to-photo W+ step {defaults['step_rms']:.4g} w-stds: within chains "
          f"{defaults['step_rms_within_chains']:.4g}, where chains meet "
          f"{'- (one chain: every photo descends from the first)' if meet is None else f'{meet:.4g}'}, largest "
          f"{defaults['step_rms_largest']:.4g} (true motion per photo {args.motion / max(args.photos - 1, 1):.4g}); "
          "chains' first photos started from: "
          + ", ".join(f"{k} {v}" for k, v in sorted(Counter(defaults['head_init'].values()).items())))
    ratio = study["photo_steps_per_photo"] / defaults["photo_steps_per_photo"]
    print(f"optimiser steps per photo (Adam updates and L-BFGS loss evaluations, each one forward and backward pass: "
          f"the work, whatever the device): study {study['photo_steps_per_photo']:.0f}, "
          f"defaults {defaults['photo_steps_per_photo']:.1f} ({ratio:.1f}x fewer); speed-up (photos/s) "
          f"{defaults['photos_per_s'] / study['photos_per_s']:.1f}x")
    print(f"final loss on the {len(cmp['photos'])} photos both encoded: study {cmp['mean_loss_study']:.4g}, defaults "
          f"{cmp['mean_loss_defaults']:.4g} (mean ratio {cmp['mean_ratio']:.3f}); per photo defaults/study: median "
          f"{cmp['median_ratio']:.3f}, max {cmp['max_ratio']:.3f}, worse on {cmp['worse']}, over 1.10x on "
          f"{cmp['over_1_10']}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.device = resolve_device(args.device)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = device.type == "cuda" and not args.no_amp

    G, w_std = make_generator(args, device)
    res = working_resolution(G.img_resolution, args.loss_resolution)
    torch.manual_seed(args.seed)
    vgg = VGG16Features().eval().requires_grad_(False).to(device)  # random weights: see the module docstring
    loss32 = ImageLoss("lpips-vgg", resolution=res, vgg=vgg)
    loss_amp = ImageLoss("lpips-vgg", resolution=res, vgg=vgg, amp=amp)
    targets = time_lapse(G, args.photos, w_std, motion=args.motion, seed=args.seed)
    k = args.study_photos or args.photos
    idx = np.unique(np.linspace(0, args.photos - 1, min(k, args.photos)).round().astype(int))  # spread out

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"generator: {args.preset} preset at {args.resolution} px (random weights), num_ws {G.num_ws}, "
          f"loss lpips-vgg at {res} px (random VGG16 weights), {args.photos} photos, motion {args.motion}", flush=True)
    defaults = run_defaults(G, targets, loss_amp, args, w_std, device, amp)
    study = run_study(G, targets, idx, loss32, args, w_std, device)
    cmp = compare(study, defaults)
    report(args, study, defaults, cmp)
    if device.type == "cpu":
        print("note: CPU figures; CPU peak memory is the process's peak resident set so far (it only grows)")
    result = dict(device=str(device), device_name=name, torch=torch.__version__, threads=torch.get_num_threads(),
                  args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  num_ws=G.num_ws, loss_resolution=res, vgg_weights="random (stand-in for ImageNet VGG16)",
                  study=study, defaults=defaults, speedup=defaults["photos_per_s"] / study["photos_per_s"],
                  comparison=cmp)
    write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
