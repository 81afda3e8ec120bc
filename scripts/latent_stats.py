"""Describe a latent dataset the way DESIGN.md describes the study's real latents.

For each subject: photos, age span, days per photo, the share of the within-subject variance a
linear age trend explains, and the lag-1 autocorrelation of the residuals (near 0: per-photo
encoding noise dominates; near 1: the sequence is temporally consistent).

    python scripts/latent_stats.py DATA [--json OUT.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from aging import io
from aging.ages import DAYS_PER_YEAR
from aging.latents import LatentDataset, LatentDatasetError
from aging.scoring import explained_variance, lag1_autocorrelation


def describe(ds: LatentDataset) -> list[dict]:
    rows = []
    for s in ds.subjects:
        one = LatentDataset([s])
        rows.append({
            "subject": s.name,
            "photos": len(s),
            "first_age_years": round(float(s.ages[0]) / DAYS_PER_YEAR, 2),
            "last_age_years": round(float(s.ages[-1]) / DAYS_PER_YEAR, 2),
            "days_per_photo": round(float(np.median(np.diff(s.ages))), 1) if len(s) > 1 else None,
            "trend_explained": round(explained_variance(one), 4),
            "residual_lag1": round(lag1_autocorrelation(one), 4),
        })
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    try:
        ds = LatentDataset.load(args.data)
    except LatentDatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = describe(ds)
    print(f"{'subject':<16}{'photos':>7}{'ages (y)':>16}{'d/photo':>9}{'trend %':>9}{'lag-1':>8}")
    for r in rows:
        print(f"{r['subject']:<16}{r['photos']:>7}{r['first_age_years']:>8.1f}-{r['last_age_years']:<7.1f}"
              f"{r['days_per_photo'] or 0:>9.1f}{100 * r['trend_explained']:>9.2f}{r['residual_lag1']:>8.3f}")
    if args.json:
        io.write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
