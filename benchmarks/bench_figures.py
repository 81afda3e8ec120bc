"""Time ``aging figures`` on the synthetic default (3 x 200 x (18, 512)) and on one subject of
186 photos (18, 512), the size of the study's published latents. Each case runs twice: cold
(every run fitted) and warm (a finished re-run, which must write nothing).

    python benchmarks/bench_figures.py --json benchmarks/results/figures.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_json  # noqa: E402

CASES = {"synthetic-default": dict(subjects=3, photos=200), "one-subject-186": dict(subjects=1, photos=186)}


def time_case(work: Path, name: str, subjects: int, photos: int, extra: list[str]) -> dict:
    from aging.synthetic import SynthConfig, generate, write_dataset

    ds, truth = generate(SynthConfig(subjects=subjects, photos=photos, shape=(18, 512)))
    data = write_dataset(ds, truth, work / name / "data")
    out = work / name / "figures"
    row = {"case": name, "subjects": subjects, "photos": photos, "shape": [18, 512]}
    for run in ("cold", "warm"):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "aging", "figures", str(data), "-o", str(out), "-q", *extra],
                       check=True, capture_output=True)
        row[f"{run}_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name:<20} {run}: {row[f'{run}_seconds']:8.1f} s", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--extra", default="", help="extra options for aging figures, e.g. '--full'")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            rows.append(time_case(Path(tmp), name, **CASES[name], extra=args.extra.split()))
    write_json(args.json, {"benchmark": "aging figures", "target_seconds": 600, "cases": rows})


if __name__ == "__main__":
    main()
