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
              each photo encoded independently, as in the original study. Timed on
              ``--study-photos`` photos spread over the sequence.
``defaults``  batch ``--batch`` (16), ``--steps`` (1000) for the chains' first photos and
              ``--steps-after-first`` (100) for the others, ``previous`` init with ``--heads``
              (best), mixed precision on CUDA (``--no-amp`` to turn it off); all ``--photos``
              photos.

Reported per setting: photos/s, seconds per photo, ms per (batch) step, peak memory (CUDA:
``max_memory_allocated``; CPU: the process's peak resident set, which only grows), and the final
per-photo loss; then the speed-up and the losses of both settings on the photos both encoded, and
the RMS photo-to-photo W+ step of the defaults within chains and where two chains meet.

Examples::

    python benchmarks/bench_encode.py --device cuda --resolution 1024 --photos 256 --json benchmarks/results/encode_gpu.json
    python benchmarks/bench_encode.py --device cpu --preset tiny --resolution 64 --photos 64 --batch 4 \\
        --study-photos 4 --json benchmarks/results/encode_cpu64.json          # make bench-encode
    python benchmarks/bench_encode.py --device cpu --preset tiny --resolution 32 --photos 16 --batch 4 \\
        --study-photos 2 --study-steps 200 --steps 200 --steps-after-first 20  # 1 min; too few steps to judge losses
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from aging.devices import resolve_device  # noqa: E402
from aging.encode.losses import ImageLoss, working_resolution  # noqa: E402
from aging.encode.options import HEADS, ProjectOptions, SequenceOptions  # noqa: E402
from aging.encode.projector import project, project_sequence, w_stats  # noqa: E402
from aging.encode.vgg import VGG16Features  # noqa: E402
from aging.stylegan.networks import Generator  # noqa: E402
from common import peak_memory, reset_peak, sync, write_json  # noqa: E402

SEQUENCE = SequenceOptions()  # the toolkit's defaults

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
    p.add_argument("--photos", type=int, default=64, help="Photos of the time-lapse (toolkit defaults).")
    p.add_argument("--study-photos", type=int, default=4, help="Photos timed in the study setting (batch 1).")
    p.add_argument("--study-steps", type=int, default=1000)
    p.add_argument("--reference-batch", type=int, default=0, metavar="K",
                   help="Also encode every photo in the study's setting, K at a time (the same independent "
                        "optimisation per photo, not timed), to compare the losses over all photos [0: off].")
    p.add_argument("--steps", type=int, default=SEQUENCE.project.steps,
                   help="Toolkit: steps of the chains' first photos.")
    p.add_argument("--steps-after-first", type=int, default=SEQUENCE.steps_after_first,
                   help="Toolkit: steps of warm-started batches.")
    p.add_argument("--batch", type=int, default=SEQUENCE.batch, help="Toolkit batch size.")
    p.add_argument("--heads", choices=HEADS, default=SEQUENCE.heads,
                   help="Toolkit: where the chains' first photos start.")
    p.add_argument("--chain-length", type=int, default=SEQUENCE.chain_length,
                   help="Toolkit: at most this many photos per chain.")
    p.add_argument("--min-chain", type=int, default=SEQUENCE.min_chain,
                   help="Toolkit: fewer chains than the batch where they would be shorter than this.")
    p.add_argument("--lr-after-first", type=float, default=SEQUENCE.lr_after_first,
                   help="Toolkit: peak lr of warm-started photos.")
    p.add_argument("--smooth", type=float, default=SEQUENCE.project.smooth, help="Toolkit: temporal smoothness weight.")
    p.add_argument("--loss-resolution", type=int, default=None, help="Working resolution [256 or the generator's].")
    p.add_argument("--no-amp", action="store_true", help="Toolkit setting in float32 even on CUDA.")
    p.add_argument("--motion", type=float, default=0.3,
                   help="Total movement of the latent over the sequence, in per-component stds of w.")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="Write the results as JSON.")
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
    """The study's setting: ``--study-steps`` per photo from the mean, float32 (the batch is 1)."""
    return ProjectOptions(steps=args.study_steps)


def defaults_options(args, amp: bool) -> SequenceOptions:
    """The toolkit's defaults, with the command line's changes."""
    project = replace(SEQUENCE.project, steps=args.steps, smooth=args.smooth, fp16=amp)
    return replace(SEQUENCE, project=project, batch=args.batch, init="previous", heads=args.heads,
                   chain_length=args.chain_length, min_chain=args.min_chain, steps_after_first=args.steps_after_first,
                   lr_after_first=args.lr_after_first, seed=args.seed)


def run_study(G, targets, idx, loss, args, w_std, device) -> dict:
    options = study_options(args)
    # warm-up (kernels, allocator)
    project(G, targets[idx[:1]], loss=loss, options=replace(options, steps=3), w_std=w_std)
    sync(device)
    reset_peak(device)
    losses = []
    t0 = time.perf_counter()
    for i in idx:
        proj = project(G, targets[i:i + 1], loss=loss, options=options, w_std=w_std)
        losses.append(float(proj.losses["total"][0]))
    sync(device)
    sec = time.perf_counter() - t0
    n = len(idx)
    return dict(photos=n, seconds=sec, photos_per_s=n / sec, s_per_photo=sec / n,
                ms_per_step=1000 * sec / (n * args.study_steps), photo_steps_per_photo=args.study_steps, batch=1,
                steps=args.study_steps,
                peak_memory_bytes=peak_memory(device), losses=dict(zip(map(int, idx), losses)))


def run_defaults(G, targets, loss, args, w_std, device, amp: bool) -> dict:
    options = defaults_options(args, amp)
    project(G, targets[:args.batch], loss=loss, options=replace(options.project, steps=3), w_std=w_std)  # warm-up
    sync(device)
    reset_peak(device)
    losses, batch_steps, photo_steps, batches, head_init = {}, 0, 0, [], {}
    ws = torch.zeros(len(targets), G.num_ws, G.w_dim)
    t0 = time.perf_counter()
    for idx, proj in project_sequence(G, targets, loss=loss, options=options, w_std=w_std):
        losses.update(zip(idx, (float(v) for v in proj.losses["total"].cpu())))
        if proj.info["init"] != "previous":  # how each chain's first photo ended up started
            init = proj.info["init"]
            head_init.update(zip(idx, init if isinstance(init, list) else [init] * len(idx)))
        ws[idx] = proj.ws.cpu()
        runs = 2 if isinstance(proj.info["init"], list) else 1  # heads "best": two runs
        batch_steps += proj.steps * runs
        photo_steps += proj.steps * runs * len(idx)
        batches.append(len(idx))
    sync(device)
    sec = time.perf_counter() - t0
    n = len(targets)
    heads = sorted(head_init)  # the photos not started from a predecessor: the chains' first photos
    inner = [i for i in range(1, n) if i not in heads]
    return dict(photos=n, seconds=sec, photos_per_s=n / sec, s_per_photo=sec / n,
                ms_per_step=1000 * sec / batch_steps, photo_steps_per_photo=photo_steps / n, batch=args.batch,
                batches=batches, steps=args.steps,
                steps_after_first=args.steps_after_first, heads=args.heads, chain_heads=heads, head_init=head_init,
                amp=amp, peak_memory_bytes=peak_memory(device), losses=dict(sorted(losses.items())),
                step_rms=step_rms(ws, w_std), step_rms_within_chains=step_rms(ws, w_std, inner),
                step_rms_where_chains_meet=step_rms(ws, w_std, heads[1:]))


def run_reference(G, targets, loss, args, w_std, defaults) -> dict:
    """The study's setting on every photo, ``--reference-batch`` photos at a time: Adam's updates
    are per element, so each photo follows its own batch-1 optimisation (up to float rounding)."""
    n = len(targets)
    losses = torch.zeros(n)
    ws = torch.zeros(n, G.num_ws, G.w_dim)
    for a in range(0, n, args.reference_batch):
        proj = project(G, targets[a:a + args.reference_batch], loss=loss, options=study_options(args), w_std=w_std)
        losses[a:a + len(proj)] = proj.losses["total"].float().cpu()
        ws[a:a + len(proj)] = proj.ws.cpu()
    ours = torch.tensor([defaults["losses"][i] for i in range(n)])
    ratio = ours / losses
    return dict(batch=args.reference_batch, losses=losses.tolist(), mean_loss=float(losses.mean()),
                mean_loss_defaults=float(ours.mean()), mean_ratio=float(ours.mean() / losses.mean()),
                median_ratio=float(ratio.median()), max_ratio=float(ratio.max()), worse=int((ratio > 1).sum()),
                step_rms=step_rms(ws, w_std))


def step_rms(ws: torch.Tensor, w_std: float, at: list[int] | None = None) -> float:
    """Root-mean-square photo-to-photo W+ step of a sequence, in per-component stds of w (``at``:
    only the steps into these photos)."""
    steps = ws.diff(dim=0)  # steps[i - 1]: from photo i - 1 to photo i
    if at is not None:
        if not at:
            return float("nan")
        steps = steps[[i - 1 for i in at]]
    return float(steps.square().mean().sqrt() / w_std)


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
    k = min(args.study_photos, args.photos)
    idx = np.unique(np.linspace(0, args.photos - 1, k).round().astype(int))  # spread over the sequence

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"generator: {args.preset} preset at {args.resolution} px (random weights), num_ws {G.num_ws}, "
          f"loss lpips-vgg at {res} px (random VGG16 weights), {args.photos} photos, motion {args.motion}")

    study = run_study(G, targets, idx, loss32, args, w_std, device)
    defaults = run_defaults(G, targets, loss_amp, args, w_std, device, amp)
    common = [int(i) for i in idx]
    s_loss = float(np.mean([study["losses"][i] for i in common]))
    d_loss = float(np.mean([defaults["losses"][i] for i in common]))
    speedup = defaults["photos_per_s"] / study["photos_per_s"]

    def line(name, r):
        print(f"{name:9s} photos/s {r['photos_per_s']:.4g}  s/photo {r['s_per_photo']:.4g}  ms/step "
              f"{r['ms_per_step']:.4g} (batch {r['batch']})  peak memory {r['peak_memory_bytes'] / 2**20:.0f} MiB  "
              f"mean final loss {np.mean(list(r['losses'].values())):.4g} over {r['photos']} photos")

    line("study", study)
    line("defaults", defaults)
    print(f"defaults: RMS photo-to-photo W+ step {defaults['step_rms']:.4g} w-stds: within chains "
          f"{defaults['step_rms_within_chains']:.4g}, where chains meet {defaults['step_rms_where_chains_meet']:.4g} "
          f"(true motion per photo {args.motion / max(args.photos - 1, 1):.4g}); chains' first photos started from: "
          + ", ".join(f"{k} {v}" for k, v in sorted(Counter(defaults['head_init'].values()).items())))
    ratio = study["photo_steps_per_photo"] / defaults["photo_steps_per_photo"]
    print(f"Adam steps per photo (the work, whatever the device): study {study['photo_steps_per_photo']:.0f}, "
          f"defaults {defaults['photo_steps_per_photo']:.0f} ({ratio:.1f}x fewer); the speed-up is this times "
          f"{args.batch} x (time of a batch-1 step / time of a batch-{args.batch} step)")
    print(f"speed-up (photos/s) {speedup:.1f}x;  on the {len(common)} photos both encoded {common}: "
          f"study loss {s_loss:.4g}, defaults loss {d_loss:.4g} ({'no worse' if d_loss <= s_loss else 'WORSE'}; "
          f"ratio {d_loss / s_loss:.3f})")
    per_photo = [(i, study["losses"][i], defaults["losses"][i]) for i in common]
    print("per photo (index, study, defaults): " + ", ".join(f"({i}, {a:.4g}, {b:.4g})" for i, a, b in per_photo))
    reference = None
    if args.reference_batch > 0:
        reference = run_reference(G, targets, loss32, args, w_std, defaults)
        print(f"all {args.photos} photos, study setting encoded {args.reference_batch} at a time (untimed): mean loss "
              f"{reference['mean_loss']:.4g}, defaults {reference['mean_loss_defaults']:.4g} (ratio "
              f"{reference['mean_ratio']:.3f}); per photo defaults/study: median {reference['median_ratio']:.3f}, "
              f"max {reference['max_ratio']:.3f}, worse on {reference['worse']} of {args.photos}; RMS photo-to-photo "
              f"W+ step of the study setting {reference['step_rms']:.4g} w-stds")
    if device.type == "cpu":
        print("note: CPU peak memory is the process's peak resident set so far (it only grows)")
    result = dict(device=str(device), device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else
                  platform.processor(), torch=torch.__version__, threads=torch.get_num_threads(),
                  args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  num_ws=G.num_ws, loss_resolution=res, vgg_weights="random (stand-in for ImageNet VGG16)",
                  study=study, defaults=defaults, speedup=speedup, common_photos=common,
                  common_loss_study=s_loss, common_loss_defaults=d_loss, reference=reference)
    write_json(args.json, result, indent=1)
    return result


if __name__ == "__main__":
    main()
