"""Benchmark of ``aging fetch`` (issue 5 targets), without the download.

Builds a 1280x720, 30 fps H.264 video of 600 "photos", each held for 3 frames (1800 frames): the
fixture faces (../shared/fixtures/faces) under random scale/rotation/shift over a dark backdrop,
so every photo differs from the previous one the way a photo-a-day video does; the photos fill
the frame's height, as in real photo-a-day videos. Then it measures

* ``cut``: streaming decode + de-duplication (``aging.fetch.frames``), video frames per second.
  Target >= 300 frames/s on the 2-core development machine;
* ``fetch``: the whole fetch of that video from a local path (scan, face detection and
  landmarks, checks, stabilisation, alignment at 1024 px, PNGs, manifest, contact sheet) and a
  second, idle re-run. Target < 180 s.

Usage::

    python benchmarks/bench_fetch.py [--json benchmarks/results/fetch.json] [--size 1024] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without install
FACES = ROOT.parent / "shared" / "fixtures" / "faces"

WIDTH, HEIGHT, FPS, PHOTOS, HOLD = 1280, 720, 30, 600, 3


def build_video(path: Path, *, photos: int = PHOTOS, hold: int = HOLD, seed: int = 0) -> dict:
    """Write the benchmark video; returns how it was made."""
    import cv2

    faces = [cv2.imread(str(p)) for p in sorted(FACES.glob("*.jpg"))]
    if not faces:
        raise SystemExit(f"no fixture faces in {FACES}")
    rng = np.random.default_rng(seed)
    try:
        import imageio_ffmpeg

        writer = imageio_ffmpeg.write_frames(str(path), (WIDTH, HEIGHT), fps=FPS, codec="libx264", quality=None,
                                             pix_fmt_in="rgb24", macro_block_size=16,
                                             output_params=["-crf", "20", "-preset", "veryfast"])
        writer.send(None)
        send, close, codec = (lambda f: writer.send(np.ascontiguousarray(f[:, :, ::-1]))), writer.close, "h264"
    except ImportError:  # no imageio-ffmpeg: OpenCV's MPEG-4 part 2 encoder (cheaper to decode than H.264)
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
        send, close, codec = vw.write, vw.release, "mpeg4"
    t0 = time.perf_counter()
    for k in range(photos):
        face = faces[k % len(faces)]
        n = face.shape[0]
        scale = rng.uniform(2.4, 2.9)           # the 256 px faces as 610-740 px photos: full-height photos
        angle = rng.uniform(-8, 8)
        tx, ty = rng.uniform(-0.08, 0.08, 2) * [WIDTH, HEIGHT]
        m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle, scale)
        m[:, 2] += [(WIDTH - 1) / 2 + tx - (n - 1) / 2, (HEIGHT - 1) / 2 + ty - (n - 1) / 2]
        frame = cv2.warpAffine(face, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderValue=(26, 15, 14))
        for _ in range(hold):
            send(frame)
    close()
    return {"codec": codec, "photos": photos, "hold": hold, "frames": photos * hold, "width": WIDTH,
            "height": HEIGHT, "fps": FPS, "build_seconds": round(time.perf_counter() - t0, 1),
            "bytes": path.stat().st_size}


def bench_cut(video: Path) -> dict:
    from aging.fetch.frames import cut, iter_frames, prefetch

    t0 = time.perf_counter()
    runs = [run for run, _ in cut(prefetch(iter_frames(video)))]   # as aging fetch streams them
    dt = time.perf_counter() - t0
    frames = sum(r.length for r in runs)
    return {"frames": frames, "runs": len(runs), "seconds": round(dt, 2), "frames_per_second": round(frames / dt, 1),
            "runs_of_3": sum(r.length == HOLD for r in runs), "target_frames_per_second": 300}


def bench_fetch(video: Path, out: Path, size: int) -> dict:
    from aging.fetch.config import parse_video
    from aging.fetch.options import FetchOptions
    from aging.fetch.pipeline import fetch_video

    cfg = parse_video({"name": "bench", "url": str(video), "start_age": "20y", "days_per_photo": 1})
    t0 = time.perf_counter()
    res = fetch_video(cfg, out, options=FetchOptions(size=size), progress=sys.stderr.isatty())
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = fetch_video(cfg, out, options=FetchOptions(size=size), progress=False)
    second = time.perf_counter() - t0
    return {"size": size, "seconds": round(first, 1), "rerun_seconds": round(second, 2), "items": res.items,
            "photos": res.photos, "counts": res.counts, "aligned": res.aligned, "rerun_did_work": again.did_work,
            "target_seconds": 180}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "fetch.json")
    p.add_argument("--size", type=int, default=1024, help="Edge of the aligned faces.")
    p.add_argument("--keep", type=Path, default=None,
                   help="Work in this folder and keep it (video, data); a video kept there is reused.")
    args = p.parse_args(argv)
    if not FACES.is_dir():
        print(f"skipped: {FACES} is absent")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        video = work / "bench.mp4"
        if args.keep and video.is_file() and (work / "bench.json").is_file():   # reuse a kept video
            made = json.loads((work / "bench.json").read_text())
        else:
            made = build_video(video)
            (work / "bench.json").write_text(json.dumps(made))
        shutil.rmtree(work / "data", ignore_errors=True)
        load_start = os.getloadavg()[0]
        print(f"video: {made['frames']} frames {WIDTH}x{HEIGHT} {made['codec']}, {made['bytes'] / 1e6:.1f} MB "
              f"(built in {made['build_seconds']} s)")
        cut_res = bench_cut(video)
        print(f"cut + de-dup: {cut_res['frames']} frames in {cut_res['seconds']} s = "
              f"{cut_res['frames_per_second']} frames/s -> {cut_res['runs']} photos "
              f"(target >= 300 frames/s, 600 photos)")
        fetch_res = bench_fetch(video, work / "data", args.size)
        print(f"fetch at {args.size} px: {fetch_res['seconds']} s for {fetch_res['photos']} photos "
              f"({fetch_res['counts']}); re-run {fetch_res['rerun_seconds']} s, "
              f"did work: {fetch_res['rerun_did_work']} (target < 180 s)")
    result = {"bench": "fetch", "video": made, "cut": cut_res, "fetch": fetch_res,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                          "load_avg_1m_start": round(load_start, 2),
                          "load_avg_1m_end": round(os.getloadavg()[0], 2)}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    ok = cut_res["frames_per_second"] >= 300 and fetch_res["seconds"] < 180 and cut_res["runs"] == PHOTOS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
