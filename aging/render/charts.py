"""Charts (matplotlib, Agg backend): errors vs age, model comparisons, linearity."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aging.ages import DAYS_PER_YEAR

STYLE = {"start": dict(color="0.45", ls="--"), "mean": dict(color="0.2", ls=":"),
         "truth": dict(color="tab:green", ls="-.")}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Lay out, write and close a figure; return its path.

    The figure is rendered in memory and written atomically through :mod:`aging.io`, and only
    when the file does not already hold exactly these bytes (Agg output is deterministic), so a
    re-run leaves an unchanged chart untouched and a killed one never leaves half a PNG.
    """
    import io as _stdio

    from aging import io

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    buf = _stdio.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, format=fmt)
    finally:
        _plt().close(fig)
    io.write_if_changed(path, buf.getvalue())
    return path


def binned(ages_days: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None,
           bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of ``values`` in ``bins`` equal-width age bins: (centres in years, means)."""
    ages = np.asarray(ages_days, dtype=np.float64) / DAYS_PER_YEAR
    values = np.asarray(values, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(ages) == 0:
        return ages, values
    nb = int(max(1, min(bins, len(np.unique(ages)))))
    edges = np.linspace(ages.min(), ages.max() + 1e-9, nb + 1)
    idx = np.clip(np.digitize(ages, edges) - 1, 0, nb - 1)
    ws = np.bincount(idx, weights=w, minlength=nb)
    vs = np.bincount(idx, weights=w * values, minlength=nb)
    ok = ws > 0
    return ((edges[:-1] + edges[1:]) / 2)[ok], vs[ok] / ws[ok]


def plot_error_vs_age(series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                      references: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                      path: str | Path, *, title: str = "", bins: int = 30) -> Path:
    """One line per model and per reference: MSE per component vs target age (years).

    Each entry is ``(target_ages_days, mse, pair_counts)`` as in ``error_vs_age.csv``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=110)
    for name, (ages, err, w) in references.items():
        if err is None:
            continue
        x, y = binned(ages, err, w, bins)
        ax.plot(x, y, label=f"baseline: {name}", lw=1.5, **STYLE.get(name, {}))
    for name, (ages, err, w) in series.items():
        x, y = binned(ages, err, w, bins)
        ax.plot(x, y, label=name, lw=1.8)
    ax.set_xlabel("target age (years)")
    ax.set_ylabel("MSE per latent component")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def plot_comparison_bars(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Horizontal bars of test MSE per model, each with its own baselines marked on its bar."""
    plt = _plt()
    names = [r["name"] for r in rows]
    vals = [r["test_mse"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5), dpi=110)
    ax.barh(names, vals, color="tab:blue", alpha=0.8, label="model")
    markers = {"start": ("0.45", "|"), "mean": ("0.1", "|"), "truth": ("tab:green", "|")}
    for ref, (color, marker) in markers.items():
        ys = [i for i, r in enumerate(rows) if r.get(f"{ref}_test_mse") is not None]
        xs = [rows[i][f"{ref}_test_mse"] for i in ys]
        if xs:
            ax.scatter(xs, ys, marker=marker, s=400, linewidths=2.5, color=color, zorder=3,
                       label=f"baseline: {ref} (same test pairs)")
    ax.invert_yaxis()
    ax.set_xlabel("test MSE per latent component")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_linearity(result: dict, path: str | Path) -> Path:
    """Two panels: distance from the anchor line vs age; sorted per-component step variances."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    years = result["ages"] / DAYS_PER_YEAR
    a1.plot(years, result["distances"], ".", ms=3)
    i, j = result["anchors"]
    a1.plot(years[[i, j]], result["distances"][[i, j]], "o", color="tab:red", label="anchors")
    a1.set_xlabel("age (years)")
    a1.set_ylabel("distance from the anchor line (RMS per component)")
    a1.set_title(f"{result['subject']}: distance from the line through two photos")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    v = np.sort(result["step_variances"])
    a2.semilogy(np.arange(1, len(v) + 1), v)
    a2.set_xlabel("component (sorted by step variance)")
    a2.set_ylabel("variance of per-day steps")
    a2.set_title("step-variance spectrum")
    a2.grid(alpha=0.3)
    return _save(fig, path)


def plot_encode(ages_days: np.ndarray, psnr: np.ndarray, steps: np.ndarray, init: list[str],
                path: str | Path, *, title: str = "") -> Path:
    """Two panels over age: each photo's reconstruction PSNR (coloured by how it was started), and
    the RMS W+ step from the previous photo (temporal consistency; spikes are bad frames or
    chain junctions). ``steps[k]`` is the step from photo ``k - 1`` to ``k`` (NaN for the first)."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 5.5), dpi=110, sharex=True)
    years = np.asarray(ages_days) / DAYS_PER_YEAR
    kinds = {"mean": ("tab:red", "the average w"), "head": ("tab:orange", "the first photo's latent"),
             "previous": ("tab:blue", "the previous photo's latent"), "near": ("tab:purple", "a nearby photo's latent"),
             "key": ("tab:green", "the key before (every --key-every-th photo)"),
             "fill": ("tab:blue", "its two keys' interpolation")}
    init = np.asarray(init)
    for kind, (color, words) in kinds.items():
        sel = init == kind
        if sel.any():
            a1.plot(years[sel], np.asarray(psnr)[sel], ".", ms=4, color=color, label=f"started from {words}")
    a1.set_ylabel("reconstruction PSNR (dB)")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    a1.set_title(title or "aging encode")
    a2.plot(years, steps, "-", lw=0.8, color="0.3")
    a2.set_xlabel("age (years)")
    a2.set_ylabel("RMS W+ step from previous photo")
    a2.grid(alpha=0.3)
    return _save(fig, path)
