"""Benchmark the StyleGAN2 and StyleGAN v1 synthesis networks (random weights, FFHQ configurations).

Random weights cost the same as trained ones. For each batch size it times the synthesis
forward pass (W+ -> images, constant noise) and reports ms/batch, images/s and peak memory
(CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak resident set, which only
grows). With ``--fp16`` it also times the half-precision path (CUDA only: the
``--num-fp16-res`` highest resolutions in float16) and reports its max abs difference from
float32 on the same latents (so does ``--compile``, against the eager network). ``--arch``
chooses the generators (default both: v2 then v1; v1 has no fp16 path and no modconv choice).

Examples::

    python benchmarks/bench_generator.py --device cpu --resolution 256 --batches 1,8
    python benchmarks/bench_generator.py --device cuda --resolution 1024 --batches 1,8,32 --fp16 \\
        --render 500 --json benchmarks/results/h100.json
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from aging.devices import resolve_device  # noqa: E402
from aging.errors import AgingError  # noqa: E402
from aging.render.video import DecodeOptions  # noqa: E402
from aging.stylegan.networks import Generator, GeneratorConfig  # noqa: E402
from aging.stylegan.networks_v1 import GeneratorV1, GeneratorV1Config  # noqa: E402
from common import peak_memory, reset_peak, sync, write_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--resolution", type=int, default=1024, help="Output resolution (power of two).")
    p.add_argument("--arch", choices=["both", "v2", "v1"], default="both",
                   help="StyleGAN2 (v2), StyleGAN v1, or both.")
    p.add_argument("--batches", default="1,8,32", help="Comma-separated batch sizes.")
    p.add_argument("--fp16", action="store_true", help="Also time the half-precision path (CUDA).")
    p.add_argument("--num-fp16-res", type=int, default=4,
                   help="Highest resolutions run in float16 with --fp16 (FFHQ default 4).")
    p.add_argument("--compile", action="store_true", help="torch.compile the synthesis network.")
    p.add_argument("--modconv", choices=["auto", "fused", "batched"], default="auto",
                   help="Modulated convolution: grouped per sample, shared across the batch, or the default rule.")
    p.add_argument("--iters", type=int, default=5, help="Timed iterations per setting.")
    p.add_argument("--warmup", type=int, default=2, help="Untimed iterations per setting.")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", type=int, default=0, metavar="FRAMES",
                   help="Also time a whole render: FRAMES latents -> captioned --render-size GIF (aging.render).")
    p.add_argument("--render-size", type=int, default=256)
    p.add_argument("--render-batch", type=int, default=0, help="Decode batch of the render (0: the largest --batches).")
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="Write the results as JSON.")
    return p.parse_args(argv)


def time_synthesis(synth, ws, *, fp16: bool, extra: dict, iters: int, warmup: int, device) -> tuple[float, torch.Tensor]:
    """Mean seconds per call of ``synth(ws, **extra)`` and the last output."""
    with torch.no_grad():
        for _ in range(warmup):
            img = synth(ws, "const", fp16=fp16, **extra)
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            img = synth(ws, "const", fp16=fp16, **extra)
        sync(device)
    return (time.perf_counter() - t0) / iters, img


def time_render(G, options: DecodeOptions, *, frames: int, seed: int) -> dict:
    """Wall time of ``aging render``'s path: decode in batches, resize, caption, write a GIF."""
    import tempfile

    from aging.render.video import VideoWriter, caption, decode

    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    with torch.no_grad():
        ws = G.mapping(torch.randn(frames, G.z_dim, generator=gen).to(device), truncation_psi=0.7).cpu().numpy()
    list(decode(G, ws[:options.batch], options))  # warm-up
    sync(device)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        with VideoWriter(Path(tmp) / "render.gif", fps=25, formats=("gif",)) as writer:
            for k, frame in enumerate(decode(G, ws, options)):
                writer.write(caption(frame, f"frame {k}"))
        seconds = time.perf_counter() - t0
        gif_mb = (Path(tmp) / "render.gif").stat().st_size / 2 ** 20
    return {"frames": frames, "size": options.size, "batch": options.batch, "fp16": options.fp16,
            "seconds": round(seconds, 3), "frames_per_s": round(frames / seconds, 2), "gif_mb": round(gif_mb, 2)}


def bench_batch(G, synth, batch: int, args, device) -> list[dict]:
    """Time ``synth`` on ``batch`` latents, in float32 and (on CUDA with ``--fp16``) float16: one
    row per precision, with its max abs difference from eager float32 where there is another path."""
    v1 = isinstance(G, GeneratorV1)
    extra = {} if v1 else {"fused_modconv": {"auto": None, "fused": True, "batched": False}[args.modconv]}
    gen = torch.Generator().manual_seed(args.seed + batch)
    z = torch.randn(batch, G.z_dim, generator=gen).to(device)
    with torch.no_grad():
        ws = G.mapping(z, truncation_psi=0.7)  # [N, num_ws, w_dim]
    halves = [False, True] if args.fp16 and device.type == "cuda" and not v1 else [False]
    ref = None  # eager float32 images, the reference of the fp16 and compiled paths
    if args.compile or len(halves) > 1:
        with torch.no_grad():
            ref = G.synthesis(ws, "const", **extra).float()
    rows = []
    for half in halves:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        reset_peak(device)
        try:
            sec, img = time_synthesis(synth, ws, fp16=half, extra=extra, iters=args.iters, warmup=args.warmup,
                                      device=device)
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch:>3} {'fp16' if half else 'fp32'}: out of memory")
            continue
        row = {"arch": "v1" if v1 else "v2", "batch": batch, "precision": "fp16" if half else "fp32", "ms_per_batch": round(sec * 1e3, 3),
               "images_per_s": round(batch / sec, 3), "peak_memory_mb": round(peak_memory(device) / 2 ** 20, 1)}
        if ref is not None:
            row["max_abs_diff_vs_fp32"] = float((img.float() - ref).abs().max())
        rows.append(row)
        extra = f", max abs diff vs eager fp32 {row['max_abs_diff_vs_fp32']:.4g}" if ref is not None else ""
        print(f"{row['arch']} batch {batch:>3} {row['precision']}: {row['ms_per_batch']:9.2f} ms/batch "
              f"{row['images_per_s']:9.2f} images/s  peak memory {row['peak_memory_mb']:.0f} MB{extra}")
    return rows


def build_generator(arch: str, args, device):
    """Random weights in the FFHQ configuration of ``arch`` at ``--resolution``."""
    if arch == "v1":
        G = GeneratorV1(GeneratorV1Config(img_resolution=args.resolution))
    else:
        G = Generator(GeneratorConfig(img_resolution=args.resolution, num_fp16_res=args.num_fp16_res,
                                      conv_clamp=256))
    return G.eval().requires_grad_(False).to(device)


def bench_arch(arch: str, args, device, batches: list[int]) -> dict:
    """Every batch size (and, with ``--render``, a whole render) on one generator."""
    torch.manual_seed(args.seed)
    G = build_generator(arch, args, device)
    synth = torch.compile(G.synthesis) if args.compile else G.synthesis
    n_params = sum(p.numel() for p in G.parameters())
    print(f"{arch}: generator {args.resolution} px, num_ws {G.num_ws}, {n_params / 1e6:.1f} M parameters"
          + ("" if arch == "v1" else f", modconv {args.modconv}") + f", compile {args.compile}")
    results = [row for batch in batches for row in bench_batch(G, synth, batch, args, device)]
    render = None
    if args.render:
        options = DecodeOptions(batch=args.render_batch or max(batches), size=args.render_size,
                                fp16=args.fp16 and device.type == "cuda" and arch == "v2")
        render = time_render(G, options, frames=args.render, seed=args.seed)
        print(f"{arch} render {render['frames']} frames -> {render['size']} px GIF (batch {render['batch']}, "
              f"{'fp16' if render['fp16'] else 'fp32'}): {render['seconds']:.2f} s, "
              f"{render['frames_per_s']:.1f} frames/s")
    return {"num_ws": G.num_ws, "parameters": n_params, "config": asdict(G.config), "results": results,
            "render": render}


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        device = torch.device(resolve_device(args.device))
    except AgingError as exc:
        sys.exit(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    if args.fp16 and device.type != "cuda":
        print("note: the half-precision path runs only on CUDA; --fp16 is skipped on CPU")
    archs = ["v2", "v1"] if args.arch == "both" else [args.arch]
    generators = {arch: bench_arch(arch, args, device, batches) for arch in archs}
    report = {
        "device": str(device), "device_name": name, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "resolution": args.resolution, "compile": args.compile,
        "modconv": args.modconv, "iters": args.iters, "warmup": args.warmup,
        "peak_memory_note": ("torch.cuda.max_memory_allocated per setting" if device.type == "cuda" else
                             "process peak RSS (ru_maxrss), cumulative"),
        "generators": generators,
        "results": [row for g in generators.values() for row in g["results"]],
    }
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
