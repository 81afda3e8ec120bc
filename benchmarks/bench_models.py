"""Benchmark of the latent-space age models (foundation issue targets).

Cases (each runs in its own process, so that peak memory is its own):

* ``every-model``: the demo experiment (every model, the MLP included) on 3 x 200 synthetic
  photos of (18, 512) latents: fit + evaluate. Target < 60 s on 2 cores.
* ``offset-first-all-dims``: ``offset`` with all 9216 components on ``first`` pairs, 3 x 200
  photos. Target < 5 s.
* ``offset-all-pairs``: ``offset`` (all 9216 components) on the ``all`` pairs of 3 x 600 photos
  (538 200 pairs): fit, then evaluation of every pair. Target < 60 s and < 4 GB peak memory.

Usage::

    python benchmarks/bench_models.py [--json benchmarks/results/models.json] [--case NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import write_json

CASES = ("every-model", "offset-first-all-dims", "offset-all-pairs")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run_case(name: str) -> dict:
    import numpy as np

    from aging.latents import make_pairs
    from aging.models import make_model
    from aging.scoring import pair_errors
    from aging.synthetic import SynthConfig, generate

    photos = 600 if name == "offset-all-pairs" else 200
    ds, _ = generate(SynthConfig(subjects=3, photos=photos, seed=0))
    rss_data = _peak_rss_mb()
    out = {"case": name, "subjects": 3, "photos_per_subject": photos, "latent_shape": list(ds.latent_shape)}
    if name == "every-model":
        import tempfile

        from aging.experiments import load_experiment, run_experiment

        exp = load_experiment("demo")  # the bundled experiment of `aging demo`
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_experiment(ds, exp, Path(tmp), progress=False, echo=lambda s: None)
        out["seconds"] = time.perf_counter() - t0
        out["runs"] = {r["name"]: round(r["fit_seconds"], 3) for r in rows}
        out["target_seconds"] = 60
    else:
        pairs = make_pairs(ds, "first" if name == "offset-first-all-dims" else "all")
        out["pairs"] = len(pairs)
        t0 = time.perf_counter()
        model = make_model("offset", select=None, dims=None).fit(pairs)
        out["fit_seconds"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        err = pair_errors(model, pairs)
        out["eval_seconds"] = time.perf_counter() - t1
        out["seconds"] = out["fit_seconds"] + out["eval_seconds"]
        out["train_mse"] = float(np.mean(err.model))
        out["start_mse"] = float(np.mean(err.refs["start"]))
        out["target_seconds"] = 5 if name == "offset-first-all-dims" else 60
        if name == "offset-all-pairs":
            out["target_peak_gb"] = 4
    out["peak_rss_mb"] = _peak_rss_mb()
    out["peak_rss_mb_after_data"] = rss_data
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=CASES, help="run one case in this process and print its JSON")
    ap.add_argument("--json", type=Path, default=None, help="write all results to this file")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "processor": platform.processor() or platform.machine()}
    try:
        import numpy as np
        import torch

        machine.update(numpy=np.__version__, torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        pass
    results = []
    for case in CASES:
        proc = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        ok = res["seconds"] < res["target_seconds"] and res.get("peak_rss_mb", 0) < 1024 * res.get("target_peak_gb", 1e9)
        extra = f", {res['pairs']} pairs (fit {res['fit_seconds']:.1f} s + evaluate {res['eval_seconds']:.1f} s)" if "pairs" in res else ""
        print(f"{case:<24} {res['seconds']:7.1f} s (target < {res['target_seconds']} s){extra}; "
              f"peak RSS {res['peak_rss_mb'] / 1024:.2f} GB  {'OK' if ok else 'MISSED'}")
        if case == "every-model":
            for k, v in res["runs"].items():
                print(f"    {k:<30} fit {v:.2f} s")
    write_json(args.json, {"machine": machine, "results": results})


if __name__ == "__main__":
    main()
