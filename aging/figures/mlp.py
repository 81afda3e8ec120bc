"""Fig 14: the study's MLP grid as a heat-map table of test error.

The study's axes: hidden 10 / 100 / 1000; sigmoid / relu / tanh; learning rate 0.1 / 0.01 /
0.001; no / l1 / l2 regularisation; all / linear / norm features; with and without a forced
minimum age gap between the two photos of a pair. Each network is trained on random pairs of the
internal split (the study's MLP data). The quick sub-grid (the default) varies hidden size and
activation (hidden 10 and 100: hidden 1000 costs a minute or two per network on 2 CPU cores) at lr
0.01, no regularisation, linear features, with the gap; ``full`` runs all 486.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from aging.experiments import RunConfig
from aging.figures.common import Figure, FiguresOptions, fmt, run_all, table_columns, table_row, write_table
from aging.figures.linearity import fmt_noise

FILE = "fig14_mlp_grid.png"
REGULARISERS = {"none": {}, "l1": {"l1": 1e-5}, "l2": {"l2": 1e-4}}
FULL_GRID = {"hidden": (10, 100, 1000), "activation": ("sigmoid", "relu", "tanh"), "lr": (0.1, 0.01, 0.001),
             "reg": tuple(REGULARISERS), "features": ("all", "linear", "norm"), "gap": (False, True)}
# the quick sub-grid leaves out hidden 1000 (a minute or two per network on 2 CPU cores): --full has it
QUICK_GRID = {**{k: v[:1] for k, v in FULL_GRID.items()}, "hidden": (10, 100),
              "activation": ("sigmoid", "relu", "tanh"), "lr": (0.01,), "features": ("linear",), "gap": (True,)}
GRID_COLUMNS = ("hidden", "activation", "lr", "reg", "features", "min_gap")


def mlp_configs(dim: int, opts: FiguresOptions) -> tuple[list[RunConfig], list[dict], dict]:
    """The runs of the grid, each point's settings (same order) and the grid itself."""
    grid = FULL_GRID if opts.full else QUICK_GRID
    cfgs, points = [], []
    for values in itertools.product(*grid.values()):
        p = dict(zip(grid, values))
        params = {"hidden": p["hidden"], "activation": p["activation"], "lr": p["lr"], "features": p["features"],
                  "dims": min(1024, dim), "epochs": opts.mlp_epochs, **REGULARISERS[p["reg"]]}
        gap = opts.min_gap if p["gap"] else 0
        name = f"mlp-h{p['hidden']}-{p['activation']}-lr{p['lr']:g}-{p['reg']}-{p['features']}-gap{gap}"
        cfgs.append(RunConfig(name=name, model="mlp", params=params, pairs="random", split="internal",
                              n_pairs=opts.mlp_pairs, min_gap=gap, seed=opts.seed))
        points.append({**p, "min_gap": gap})
    return cfgs, points, grid


def make_mlp_figure(ds, out: Path, runs: Path, opts: FiguresOptions, *, noise: float | None,
                    progress: bool = False, echo=None) -> tuple[list[Figure], dict]:
    """Run the grid, write Fig 14 and ``tables/mlp.{csv,md}``."""
    cfgs, points, grid = mlp_configs(ds.dim, opts)
    results = run_all(ds, cfgs, runs, progress=progress, echo=echo)
    rows = [{**{k: p[k] for k in GRID_COLUMNS}, **table_row(c, results[c.name], noise)}
            for c, p in zip(cfgs, points) if isinstance(results[c.name], dict)]
    table = write_table(out, "mlp", rows, table_columns(rows, GRID_COLUMNS))
    if not rows:
        return [], table
    _heatmap(points, [results[c.name] for c in cfgs], grid, out / FILE, noise)
    best = min(rows, key=lambda r: r["test_mse"])
    caption = (f"Study Fig 14: test error of every MLP of its grid (hidden size, activation, learning rate, "
               f"regularisation, features, forced minimum age gap) as a table. Here a heat-map table of "
               f"{len(rows)} networks ({'the whole grid' if opts.full else 'a quick sub-grid; --full for all 486'}), "
               f"each on {opts.mlp_pairs} random pairs (gap {opts.min_gap} days where forced), internal 80/20 "
               f"split, at most {opts.mlp_epochs} epochs with early stopping; each cell is test MSE per "
               f"component, its baseline 'start' on the same pairs {fmt(best['start_mse'])}, the estimated noise "
               f"floor {fmt_noise(noise)}. Best: {best['run']} ({fmt(best['test_mse'])}). Differences from the "
               f"study: l1 = {REGULARISERS['l1']['l1']:g} and l2 = {REGULARISERS['l2']['l2']:g} penalties, "
               f"inputs standardised, early stopping on 10 % of the training pairs.")
    return [Figure(FILE, "14", caption)], table


def _heatmap(points: list[dict], results: list, grid: dict, path: Path, noise: float | None) -> Path:
    """Rows: the first half of the varying axes; columns: the rest; cells: test MSE."""
    from aging.render.charts import _plt, _save

    axes = [k for k, v in grid.items() if len(v) > 1] or ["hidden"]
    row_axes, col_axes = axes[: max(1, len(axes) // 2)], axes[max(1, len(axes) // 2):]

    def label(p, keys):
        return " / ".join(f"{k}={p['min_gap'] if k == 'gap' else p[k]}" for k in keys) or "all"

    row_labels = list(dict.fromkeys(label(p, row_axes) for p in points))
    col_labels = list(dict.fromkeys(label(p, col_axes) for p in points))
    cells = np.full((len(row_labels), len(col_labels)), np.nan)
    for p, m in zip(points, results):
        if isinstance(m, dict) and m["test_mse"] is not None:
            cells[row_labels.index(label(p, row_axes)), col_labels.index(label(p, col_axes))] = m["test_mse"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2.0 + 1.1 * len(col_labels), 1.6 + 0.42 * len(row_labels)), dpi=100)
    im = ax.imshow(cells, cmap="viridis_r", aspect="auto")
    for (r, c), v in np.ndenumerate(cells):
        ax.text(c, r, "–" if np.isnan(v) else f"{v:.3g}", ha="center", va="center", fontsize=7, color="w")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7)
    fig.colorbar(im, ax=ax, label="test MSE per component")
    ax.set_title(f"Fig 14: MLP grid, test MSE (noise floor {fmt_noise(noise)})", fontsize=9)
    return _save(fig, path)
