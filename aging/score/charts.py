"""``scores.png``: identity distance and apparent age over age, real and generated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aging.ages import DAYS_PER_YEAR


def _series(rows: list[dict], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ages in years, values)`` of the rows where ``y_key`` was computed, each x once."""
    seen: dict[float, float] = {}
    for r in rows:
        if r[y_key] is not None:
            seen.setdefault(r[x_key] / DAYS_PER_YEAR, float(r[y_key]))
    xs = np.array(sorted(seen))
    return xs, np.array([seen[x] for x in xs])


def plot_scores(rows: list[dict], real_to_source: list[tuple[int, float]], path: str | Path, *,
                threshold: float, title: str = "") -> Path:
    """Two panels over age (years).

    Top: descriptor distance of each generated face to the real photo nearest in age and to the
    source photo, the real photos' own distance to the source (how far a real face drifts), and
    the same-person threshold. Bottom: apparent age of the generated and the real faces against
    the target age (the diagonal).
    """
    from aging.render.charts import _plt, _save

    plt = _plt()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6.5), dpi=110, sharex=True)
    for key, label, style in (("identity_distance", "generated to real (nearest age)", dict(color="tab:blue", ls="-")),
                              ("source_distance", "generated to source", dict(color="tab:orange", ls="--"))):
        x, y = _series(rows, "age_days", key)
        a1.plot(x, y, marker=".", ms=4, lw=0.8, label=label, **style)
    if real_to_source:
        x = np.array([a for a, _ in real_to_source]) / DAYS_PER_YEAR
        a1.plot(x, [d for _, d in real_to_source], "s", ms=4, color="0.35", label="real to source")
    a1.axhline(threshold, color="tab:red", lw=1, ls=":", label=f"same person under {threshold:g}")
    a1.set_ylim(bottom=0, top=max(1.2 * threshold, a1.get_ylim()[1]))
    a1.set_ylabel("face descriptor distance")
    a1.set_title(title or "aging score")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    xg, yg = _series(rows, "age_days", "age_generated")
    xr, yr = _series(rows, "real_age_days", "age_real")
    if len(xg) or len(xr):
        a2.plot(xg, yg, ".", ms=5, color="tab:blue", label="generated (estimated)")
        a2.plot(xr, yr, "s", ms=4, color="0.35", label="real (estimated)")
        span = np.concatenate([xg, xr, [r["age_days"] / DAYS_PER_YEAR for r in rows]])
        a2.plot([span.min(), span.max()], [span.min(), span.max()], color="tab:red", lw=1, ls=":",
                label="target age")
        a2.legend(fontsize=8)
    else:
        a2.text(0.5, 0.5, "no apparent ages (pip install aging[eval])", ha="center", va="center",
                transform=a2.transAxes)
    a2.set_xlabel("age (years)")
    a2.set_ylabel("apparent age (years)")
    a2.grid(alpha=0.3)
    return _save(fig, path)
