"""``tables/models``: every model of the registry on the internal, future and external splits."""

from __future__ import annotations

from pathlib import Path

from aging.experiments import RunConfig
from aging.figures.common import FiguresOptions, run_all, table_columns, table_row, write_table

SPLITS = ("internal", "future", "external")


def model_configs(dim: int, opts: FiguresOptions) -> list[RunConfig]:
    """One configuration per model (the study's settings where it had them) per split; the MLP has
    the study's 1000 hidden units with ``--full`` only (100 otherwise, to keep the default quick)."""
    half = max(1, dim // 2)
    models = [("interp", {}, {}), ("direct", {}, {}),
              ("offset", {"select": "norm", "dims": half}, {}),
              ("ridge", {"select": "norm", "dims": half, "cv": 3}, {}),
              ("mlp", {"hidden": 1000 if opts.full else 100, "activation": "tanh", "lr": 0.01, "features": "linear",
                       "dims": min(1024, dim), "epochs": opts.mlp_epochs},
               {"pairs": "random", "n_pairs": opts.mlp_pairs, "min_gap": opts.min_gap}),
              ("direction", {} if opts.direction is None else {"direction": str(opts.direction)}, {}),
              ("trend", {}, {})]
    return [RunConfig(name=f"model-{model}-{split}", model=model, params=params, split=split, seed=opts.seed,
                      **{"pairs": "first", **protocol})
            for split in SPLITS for model, params, protocol in models]


def make_models_table(ds, out: Path, runs: Path, opts: FiguresOptions, *, noise: float | None,
                      progress: bool = False, echo=None) -> dict:
    """Run every model on every split that applies and write ``tables/models.{csv,md}``; a split
    that cannot apply (external on one subject) is listed under ``skipped``."""
    cfgs = model_configs(ds.dim, opts)
    results = run_all(ds, cfgs, runs, progress=progress, echo=echo)
    rows = [table_row(c, results[c.name], noise) for c in cfgs if isinstance(results[c.name], dict)]
    table = write_table(out, "models", rows, table_columns(rows))
    table["skipped"] = {c.name: results[c.name] for c in cfgs if isinstance(results[c.name], str)}
    return table
