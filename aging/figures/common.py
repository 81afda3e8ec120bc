"""What every figure family shares: the options, a figure's record, running configurations
(finished runs reused), error curves read back from runs, table rows, and one chart of panels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging.errors import AgingError, one_line


class FiguresError(AgingError, ValueError):
    """A figure that cannot be made from this input (the message names the option or file)."""


@dataclass(frozen=True)
class FiguresOptions:
    """The settings of ``aging figures`` (the single source of its defaults)."""

    full: bool = False  # the whole MLP grid (Fig 14) instead of a quick sub-grid
    subject: str | None = None  # Fig 3.3's subject [default: the first]
    anchors: tuple[int, int] = (0, -1)  # Fig 3.3's anchor photos (indices; negative from the end)
    direction: str | None = None  # Fig 15: a direction file (.npy) instead of a learned direction
    mlp_pairs: int = 6100  # the study's MLP data: random pairs ...
    min_gap: int = 30  # ... with a forced minimum age gap (days)
    mlp_epochs: int = 200  # at most (early stopping)
    seed: int = 0
    generator: str | None = None  # Fig 1 as faces, Figs 3.1/3.2 and 5.1/5.2 (videos): a generator
    photos: str | None = None  # the subject's aligned photos (the real faces) [default: decoded latents]
    fig1_ages: int = 6  # Fig 1's columns: photos at this many equal age intervals


@dataclass(frozen=True)
class Figure:
    """One figure of the report: its file (relative to OUT), the study's number, its caption."""

    file: str
    study_figure: str
    caption: str


TABLE_COLUMNS = ("model", "select", "dims", "split", "pairs", "train_mse", "test_mse", "start_mse",
                 "mean_mse", "truth_mse", "noise_floor", "n_train_pairs", "n_test_pairs", "run")


def run_all(ds, cfgs, runs_dir: Path, *, progress: bool = False, echo=None) -> dict[str, dict | str]:
    """Each :class:`~aging.experiments.RunConfig` run into ``runs_dir/<name>`` (a finished run is
    reused, nothing written): name -> its metrics, or the one-line reason it cannot apply."""
    from aging.experiments import dataset_fingerprint, run_config

    fp = dataset_fingerprint(ds)
    out = {}
    for cfg in cfgs:
        try:
            metrics, reused = run_config(ds, cfg, Path(runs_dir) / cfg.name, progress=progress, fingerprint=fp)
        except AgingError as exc:  # e.g. an external split of one subject
            out[cfg.name] = one_line(exc)
            continue
        out[cfg.name] = metrics
        if echo:
            echo(f"{'reused' if reused else 'ran':>6}  {cfg.name:<32} test MSE {metrics['test_mse']:.4f}")
    return out


def table_row(cfg, metrics: dict, noise: float | None) -> dict:
    """One row of a table (:data:`TABLE_COLUMNS`) from a run's configuration and ``metrics.json``."""
    b = metrics["baselines"]
    return {"model": cfg.model, "select": cfg.params.get("select", cfg.params.get("features", "")),
            "dims": cfg.params.get("dims", ""), "split": cfg.split, "pairs": cfg.pairs,
            "train_mse": metrics["train_mse"], "test_mse": metrics["test_mse"],
            "start_mse": b["start"]["test_mse"], "mean_mse": b["mean"]["test_mse"],
            "truth_mse": b["truth"]["test_mse"], "noise_floor": noise,
            "n_train_pairs": metrics["n_train_pairs"], "n_test_pairs": metrics["n_test_pairs"], "run": cfg.name}


def table_columns(rows: list[dict], extra: tuple[str, ...] = ()) -> list[str]:
    """The columns of a table; ``truth_mse`` only where the data has a truth (synthetic)."""
    cols = list(extra) + [c for c in TABLE_COLUMNS if c not in extra]
    if not any(r.get("truth_mse") is not None for r in rows):
        cols.remove("truth_mse")
    return cols


def fmt(x) -> str:
    if x is None or x == "":
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |\n" for r in rows)


def write_table(out: Path, name: str, rows: list[dict], columns: list[str]) -> dict:
    """``tables/<name>.csv`` and ``.md`` (each only when changed); returns the report's entry."""
    from aging import io

    io.write_csv(out / "tables" / f"{name}.csv", rows, fieldnames=columns, only_if_changed=True)
    io.write_if_changed(out / "tables" / f"{name}.md", markdown_table(rows, columns))
    return {"csv": f"tables/{name}.csv", "markdown": f"tables/{name}.md", "columns": columns, "rows": rows}


def test_curve(run_dir: Path) -> dict:
    """The test-set error curve of a run (``error_vs_age.csv``)."""
    from aging.experiments import read_error_csv

    return read_error_csv(Path(run_dir) / "error_vs_age.csv")


def plot_error_panels(panels: list[tuple[str, dict[str, dict]]], path: Path, *, title: str,
                      noise: float | None) -> Path:
    """Panels of test error vs target age: ``(panel title, {label: curve})``, the baselines of a
    panel's first curve (same test pairs) dashed, the noise floor as a horizontal line."""
    from aging.render.charts import STYLE, _plt, _save, binned

    plt = _plt()
    cols = min(2, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 3.8 * rows + 0.6), dpi=100, squeeze=False)
    for ax, (sub, curves) in zip(axes.flat, panels):
        first = next(iter(curves.values()))
        for ref in ("start", "mean", "truth"):
            if first.get(ref) is not None:
                ax.plot(*binned(first["target_age_days"], first[ref], first["pairs"]), lw=1.4,
                        label=f"baseline: {ref}", **STYLE[ref])
        for label, c in curves.items():
            ax.plot(*binned(c["target_age_days"], c["model"], c["pairs"]), lw=1.6, label=label)
        if noise is not None:
            ax.axhline(noise, color="tab:purple", lw=1, ls=(0, (1, 1)), label="noise floor (estimated)")
        ax.set_title(sub, fontsize=10)
        ax.set_xlabel("target age (years)")
        ax.set_ylabel("test MSE per component")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def dims_grid(dim: int) -> list[int]:
    """The study's component counts: 10, half, three quarters and all of ``dim``."""
    return sorted({min(10, dim), max(1, dim // 2), max(1, 3 * dim // 4), dim})


def finite(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)
