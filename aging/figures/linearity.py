"""Fig 3.3: how far a subject's latents lie from the line through two of its photos.

Left: at every photo, the error of two-point linear interpolation/extrapolation through the
anchors (RMS per component), the study's line distance ``|d|``, ``d = (a - p) - ((a - p) . n) n``,
and what independent encoding noise of variance ``s^2`` alone would give: with ``t`` the photo's
position along the anchors (0 at the first, 1 at the second), both have expectation
``s^2 (1 + (1 - t)^2 + t^2)`` per component (the line distance a fraction ``1/D`` less).
Middle: the step-variance spectrum (variance of each component's per-day photo-to-photo steps,
sorted), with the selected "most linear" components (the study's ``norm`` rule) marked.
Right: how those components spread over the W+ layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aging.ages import DAYS_PER_YEAR
from aging.figures.common import Figure, FiguresError
from aging.latents import LatentDatasetError, make_pairs
from aging.scoring import line_distances, linearity

FILE = "fig3.3_linearity.png"


def interpolation_profile(ages: np.ndarray, latents: np.ndarray, i: int, j: int, noise: float | None) -> dict:
    """Per photo: position ``t`` along the anchors, interpolation RMS error, line distance and the
    noise-only expectation of both (RMS; None without a noise estimate)."""
    x = latents.reshape(len(latents), -1).astype(np.float64)  # [n, D]
    t = (ages - ages[i]) / float(ages[j] - ages[i])  # [n]
    pred = x[i][None, :] + t[:, None] * (x[j] - x[i])[None, :]
    err = np.sqrt(np.mean((pred - x) ** 2, axis=1))
    expect = None if noise is None else np.sqrt(noise * (1 + (1 - t) ** 2 + t**2))
    if expect is not None:
        expect[[i, j]] = 0.0  # an anchor is on its own line
    return {"t": t, "interp_rms": err, "distance": line_distances(latents, i, j), "noise_rms": expect}


def most_linear_layers(ds, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` most linear components (``norm`` rule, every photo) and the count per W+ layer."""
    from aging.models import select_components

    chosen = select_components(make_pairs(ds, "first"), "norm", n)
    layers = ds.latent_shape[0] if len(ds.latent_shape) == 2 else 1
    per_layer = np.bincount(chosen // (ds.dim // layers), minlength=layers)
    return chosen, per_layer


def make_linearity_figure(ds, out: Path, *, subject: str | None, anchors: tuple[int, int],
                          noise: float | None) -> Figure:
    """Write Fig 3.3 to ``out`` and return its record."""
    from aging.render.charts import _plt, _save

    try:
        res = linearity(ds, subject if subject is not None else 0, anchors)
    except LatentDatasetError as exc:
        raise FiguresError(f"Fig 3.3 (--subject/--anchors): {exc}") from None
    k = ds.index_of(res["subject"])
    s = ds.subjects[k]
    i, j = res["anchors"]
    prof = interpolation_profile(s.ages, s.latents, i, j, noise)
    n_sel = max(1, ds.dim // 10)
    chosen, per_layer = most_linear_layers(ds, n_sel)
    plt = _plt()
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.4), dpi=100)
    years = s.ages / DAYS_PER_YEAR
    a1.plot(years, prof["interp_rms"], ".", ms=3, color="tab:blue", label="two-point interpolation error")
    a1.plot(years, prof["distance"], ".", ms=3, color="tab:orange", label="line distance |d|")
    if prof["noise_rms"] is not None:
        order = np.argsort(years)
        a1.plot(years[order], prof["noise_rms"][order], "-", color="tab:purple", lw=1.2,
                label="expected from encoding noise alone")
    a1.plot(years[[i, j]], prof["distance"][[i, j]], "o", color="tab:red", label="anchors")
    a1.set(xlabel="age (years)", ylabel="RMS per component", title=f"{s.name}: anchors {int(s.ages[i])} -> "
           f"{int(s.ages[j])} days")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    var = res["step_variances"]
    order = np.argsort(var, kind="stable")
    a2.semilogy(np.arange(1, len(var) + 1), var[order], lw=1, color="0.3")
    rank = np.empty(len(var), int)
    rank[order] = np.arange(1, len(var) + 1)
    a2.semilogy(rank[chosen], var[chosen], "|", ms=8, color="tab:red", alpha=0.5,
                label=f"{n_sel} most linear (norm rule)")
    a2.set(xlabel="component (sorted by step variance)", ylabel="variance of per-day steps", title="step-variance spectrum")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    a3.bar(np.arange(len(per_layer)), per_layer, color="tab:red", alpha=0.8)
    a3.set(xlabel="W+ layer", ylabel="most linear components", title="where they sit among the layers")
    a3.set_xticks(np.arange(len(per_layer)))  # one tick per layer, none between
    _save(fig, out / FILE)
    return Figure(FILE, "3.3", _caption(s.name, int(s.ages[i]), int(s.ages[j]), prof, noise, n_sel))


def _caption(name, age_i, age_j, prof, noise, n_sel) -> str:
    inner = (prof["t"] > 0) & (prof["t"] < 1)
    med = float(np.median(prof["distance"][inner])) if inner.any() else float("nan")
    expect = "no noise estimate" if noise is None else \
        f"noise alone would give {float(np.median(prof['noise_rms'][inner])) if inner.any() else float('nan'):.3g}"
    return (f"Study Fig 3.3: the distance of each photo's latent from the line through two photos (first run "
            f"5840 -> 7940 days) was nearly constant over age, and the study could not explain it. Here: "
            f"{name}, anchors {age_i} -> {age_j} days; median line distance between the anchors {med:.3g} RMS per "
            f"component, {expect} (estimated per-photo noise {fmt_noise(noise)}), so that much of the distance "
            f"is encoding noise. Middle and right: the sorted step-variance spectrum and the W+ layers of the "
            f"{n_sel} most linear components (the study's L2-normalised rule). Difference from the study: "
            f"distances are RMS per component (comparable across latent sizes), not Euclidean norms.")


def fmt_noise(noise: float | None) -> str:
    return "unknown" if noise is None else f"{noise:.3g} MSE per component"
