"""Benchmark of ``aging score`` (issue 13 target: 500 generated frames at 256 px in < 2 min on 2 cores).

Builds a folder of generated-looking frames from the fixture faces (../shared/fixtures/faces):
each frame one of the 12 photos, slightly shifted, scaled, rotated and re-lit, at ``--size`` px,
named by target ages one week apart; every 50th frame is blank (a frame without a face, as a
failing generator makes). Then it scores the folder against the 12 real photos with a cold
descriptor cache (``score``) and once more into a new folder with the cache warm (``score_warm``:
what scoring a second generated set of the same subject costs), and the idle re-run
(``rerun``: nothing written). CPU seconds (this process and its workers) are reported beside the
wall-clock times, with the load average: on a shared machine the wall clock alone misleads.

Usage::

    python benchmarks/bench_score.py [--frames 500] [--size 256] [--json benchmarks/results/score.json]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install
FACES = ROOT.parent / "shared" / "fixtures" / "faces"
TARGET_S = 120.0


def build_frames(folder: Path, *, frames: int, size: int, seed: int = 0) -> list[int]:
    """Write ``frames`` images ``<age_days>.png``; returns their ages."""
    from PIL import Image, ImageEnhance

    faces = [Image.open(p).convert("RGB") for p in sorted(FACES.glob("*.jpg"))]
    if not faces:
        raise SystemExit(f"no fixture faces in {FACES}")
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ages = [6940 + 7 * k for k in range(frames)]
    for k, age in enumerate(ages):
        if k % 50 == 49:
            img = Image.new("RGB", (size, size), (40, 40, 40))
        else:
            face = faces[k * len(faces) // frames]
            img = face.rotate(float(rng.uniform(-6, 6)), resample=Image.Resampling.BICUBIC,
                              translate=tuple(rng.uniform(-8, 8, 2)))
            img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15)))
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        img.save(folder / f"{age}.png")
    return ages


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the scoring workers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(frames: int, size: int) -> dict:
    from aging.score.options import ScoreOptions
    from aging.score.pipeline import score_folders

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        build_frames(tmp / "gen", frames=frames, size=size)
        built = time.perf_counter() - t0
        options = ScoreOptions(cache=tmp / "cache", quiet=True)
        timings, cpu = {}, {}
        for name, out in (("score", "out"), ("score_warm", "out2"), ("rerun", "out2")):
            t0, c0 = time.perf_counter(), _cpu_seconds()
            res = score_folders(FACES, tmp / "gen", tmp / out, options)
            timings[name] = round(time.perf_counter() - t0, 2)
            cpu[name] = round(_cpu_seconds() - c0, 2)
        summary = res.summary
    return {"frames": frames, "size_px": size, "build_s": round(built, 2), "seconds": timings,
            "cpu_seconds": cpu, "workers": options.workers, "load_average": list(os.getloadavg()),
            "ms_per_frame": round(1000 * timings["score"] / frames, 1), "target_s": TARGET_S,
            "meets_target": timings["score"] < TARGET_S,
            "face_rate": summary.get("face_rate"), "same_person_rate": summary.get("same_person_rate"),
            "age_mae_generated": summary.get("age_mae_generated"), "age_estimator": summary.get("age_estimator")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=500)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    args = ap.parse_args(argv)
    from common import write_json

    report = {"benchmark": "score", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                "platform": platform.platform()},
              **run(args.frames, args.size)}
    s = report["seconds"]
    print(f"aging score: {args.frames} frames at {args.size} px in {s['score']:.1f} s "
          f"({report['ms_per_frame']:.0f} ms/frame; target < {TARGET_S:.0f} s: "
          f"{'met' if report['meets_target'] else 'MISSED'}); warm cache {s['score_warm']:.1f} s, "
          f"idle re-run {s['rerun']:.2f} s; CPU {report['cpu_seconds']['score']:.1f} s (load average "
          f"{report['load_average'][0]:.1f}); face rate {report['face_rate']}, "
          f"same person {report['same_person_rate']}")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
