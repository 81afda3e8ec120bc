"""Experiments: several model configurations on one latent dataset, one comparison.

An experiment is a TOML file (``configs/experiments/*.toml``)::

    name = "demo"
    [defaults]            # run-level settings shared by every run
    pairs = "first"       # first | all | random
    split = "future"      # internal | future | external
    seed = 0

    [[run]]
    name = "offset-linear"
    model = "offset"      # any registered model
    select = "linear"     # every other key is a model hyper-parameter
    dims = 921

Each run is written to ``OUT/<run name>/`` exactly as ``aging train`` writes a run; a run whose
``metrics.json`` was made with the same configuration is reused, not recomputed.
"""

from __future__ import annotations

import csv
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aging.latents import PAIR_STRATEGIES, SPLITS, LatentDataset
from aging.errors import AgingError

RUN_KEYS = {"name", "model", "pairs", "split", "seed", "n_pairs", "min_gap", "holdout", "test_fraction"}
REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "experiments"


class ExperimentError(AgingError, ValueError):
    """A malformed experiment file (the message names the file and the run)."""


@dataclass
class RunConfig:
    name: str
    model: str
    params: dict = field(default_factory=dict)
    pairs: str = "first"
    split: str = "internal"
    seed: int = 0
    n_pairs: int = 6100
    min_gap: int = 0
    holdout: str | None = None
    test_fraction: float = 0.2

    def as_dict(self) -> dict:
        return {"name": self.name, "model": self.model, "params": self.params, "pairs": self.pairs,
                "split": self.split, "seed": self.seed, "n_pairs": self.n_pairs, "min_gap": self.min_gap,
                "holdout": self.holdout, "test_fraction": self.test_fraction}


@dataclass
class Experiment:
    name: str
    runs: list[RunConfig]
    description: str = ""
    path: Path | None = None


def find_experiment(name_or_path: str | Path) -> Path:
    """A path, or a name looked up in ``./configs/experiments`` and the repository's configs."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for folder in (Path.cwd() / "configs" / "experiments", REPO_CONFIGS):
        cand = folder / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
        if cand.is_file():
            return cand
    raise ExperimentError(f"{name_or_path}: no such experiment file")


def load_experiment(path: str | Path) -> Experiment:
    from aging.models import REGISTRY

    path = find_experiment(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: invalid TOML ({exc})") from None
    defaults = data.get("defaults", {})
    bad = set(defaults) - RUN_KEYS
    if bad:
        raise ExperimentError(f"{path}: unknown key(s) in [defaults]: {', '.join(sorted(bad))}")
    runs_raw = data.get("run", [])
    if not runs_raw:
        raise ExperimentError(f"{path}: no [[run]] entries")
    runs, names = [], set()
    for i, raw in enumerate(runs_raw):
        merged = {**defaults, **raw}
        label = merged.get("name", f"run #{i + 1}")
        if "model" not in merged:
            raise ExperimentError(f"{path}: run {label!r} has no 'model'")
        if merged["model"] not in REGISTRY:
            raise ExperimentError(f"{path}: run {label!r}: unknown model {merged['model']!r} "
                                  f"(known: {', '.join(sorted(REGISTRY))})")
        name = str(merged.get("name", merged["model"]))
        if name in names:
            raise ExperimentError(f"{path}: two runs named {name!r}")
        names.add(name)
        params = {k: v for k, v in merged.items() if k not in RUN_KEYS}
        unknown = [k for k in params if k not in REGISTRY[merged["model"]].param_names()]
        if unknown:
            raise ExperimentError(f"{path}: run {name!r}: unknown parameter {unknown[0]!r} for model "
                                  f"{merged['model']} (known: {', '.join(REGISTRY[merged['model']].param_names())})")
        cfg = RunConfig(name=name, model=merged["model"], params=params,
                        **{k: merged[k] for k in RUN_KEYS - {"name", "model"} if k in merged})
        if cfg.pairs not in PAIR_STRATEGIES:
            raise ExperimentError(f"{path}: run {name!r}: unknown pairs {cfg.pairs!r}")
        if cfg.split not in SPLITS:
            raise ExperimentError(f"{path}: run {name!r}: unknown split {cfg.split!r}")
        runs.append(cfg)
    return Experiment(name=str(data.get("name", path.stem)), runs=runs,
                      description=str(data.get("description", "")), path=path)


# ---------------------------------------------------------------------------------------------
# Running one configuration and writing a run directory (shared by `aging train`)
# ---------------------------------------------------------------------------------------------


def run_config(dataset: LatentDataset, cfg: RunConfig, out_dir: Path, *, progress: bool = False,
               force: bool = False) -> tuple[dict, bool]:
    """Fit, evaluate and write ``out_dir`` (model, metrics, error-vs-age CSV and chart).

    Returns ``(metrics, reused)``; a finished run with the same configuration is reused.
    """
    from aging.evaluate import evaluate
    from aging.models import make_model
    from aging.render.charts import plot_error_vs_age

    out_dir = Path(out_dir)
    signature = {**cfg.as_dict(), "dataset": str(dataset.root) if dataset.root else None,
                 "photos": int(dataset.num_photos)}
    metrics_path = out_dir / "metrics.json"
    if metrics_path.is_file() and not force:
        try:
            old = json.loads(metrics_path.read_text())
            if old.get("config") == _plain(signature) and (out_dir / "model.json").is_file():
                return old, True
        except json.JSONDecodeError:
            pass
    result = evaluate(dataset, lambda: make_model(cfg.model, **cfg.params), pairs=cfg.pairs,
                      split=cfg.split, seed=cfg.seed, n_pairs=cfg.n_pairs, min_gap=cfg.min_gap,
                      holdout=cfg.holdout, test_fraction=cfg.test_fraction, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.model.save(out_dir)
    metrics = {**result.metrics, "name": cfg.name, "config": _plain(signature)}
    rows = ([{"set": "train", **r} for r in result.train.by_target_age()]
            + [{"set": "test", **r} for r in result.test.by_target_age()])
    write_csv(out_dir / "error_vs_age.csv", rows)
    te = result.test
    plot_error_vs_age(
        {cfg.name: (te.target_ages, te.model, None)},
        {k: (te.target_ages, v, None) for k, v in te.refs.items()},
        out_dir / "error_vs_age.png",
        title=f"{cfg.name}: {cfg.model}, {cfg.pairs} pairs, {cfg.split} split (test pairs)",
    )
    _write_json_atomic(metrics_path, metrics)  # last: its presence marks the run finished
    return metrics, False


def run_experiment(dataset: LatentDataset, exp: Experiment, out_dir: Path, *, progress: bool = True,
                   force: bool = False, echo=print) -> list[dict]:
    """Run every configuration; write ``comparison.{md,csv}`` and the comparison charts."""
    from tqdm.auto import tqdm

    from aging.render.charts import plot_comparison_bars, plot_error_vs_age

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    bar = tqdm(exp.runs, desc=f"experiment {exp.name}", disable=None if progress else True)
    for cfg in bar:
        bar.set_postfix(run=cfg.name)
        metrics, reused = run_config(dataset, cfg, out_dir / cfg.name, force=force)
        echo(f"{'reused' if reused else 'ran':>6}  {cfg.name:<24} test MSE {metrics['test_mse']:.4f}"
             f"   (start {metrics['baselines']['start']['test_mse']:.4f})")
        rows.append(comparison_row(cfg, metrics))
        curves[cfg.name] = read_error_csv(out_dir / cfg.name / "error_vs_age.csv")
    write_csv(out_dir / "comparison.csv", rows)
    (out_dir / "comparison.md").write_text(comparison_markdown(exp, rows))
    # one chart per split and pairing: errors on different test pairs are not comparable
    for split, pairs in dict.fromkeys((r["split"], r["pairs"]) for r in rows):
        names = [r["name"] for r in rows if r["split"] == split and r["pairs"] == pairs]
        first = curves[names[0]]
        refs = {k: (first["target_age_days"], first.get(k), first["pairs"]) for k in ("start", "mean", "truth")}
        plot_error_vs_age({n: (curves[n]["target_age_days"], curves[n]["model"], curves[n]["pairs"])
                           for n in names}, refs, out_dir / f"error_vs_age_{split}_{pairs}.png",
                          title=f"{exp.name}: test error vs age ({split} split, {pairs} pairs)")
    plot_comparison_bars(rows, out_dir / "comparison.png", title=f"{exp.name}: test error per model")
    return rows


def comparison_row(cfg: RunConfig, m: dict) -> dict:
    b = m["baselines"]
    start = b["start"]["test_mse"]
    return {
        "name": cfg.name, "model": cfg.model, "pairs": cfg.pairs, "split": cfg.split,
        "params": json.dumps(cfg.params, sort_keys=True),
        "n_train_pairs": m["n_train_pairs"], "n_test_pairs": m["n_test_pairs"],
        "train_mse": m["train_mse"], "test_mse": m["test_mse"],
        "start_test_mse": start, "mean_test_mse": b["mean"]["test_mse"], "truth_test_mse": b["truth"]["test_mse"],
        "vs_start": m["test_mse"] / start if start else None,
        "fit_seconds": m["fit_seconds"],
    }


def comparison_markdown(exp: Experiment, rows: list[dict]) -> str:
    def f(x):
        return "–" if x is None else f"{x:.4f}"

    lines = [f"# Experiment `{exp.name}`", ""]
    if exp.description:
        lines += [exp.description, ""]
    lines += ["Mean squared error per latent component. Baselines on the same test pairs: "
              "`start` = predict the start latent, `mean` = the subject's mean training latent, "
              "`truth` = the noise-free latent (synthetic data only; the noise floor).", "",
              "| run | model | pairs | split | train MSE | test MSE | start | mean | truth | test / start | fit s |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = "–" if r["vs_start"] is None else f"{r['vs_start']:.3f}"
        lines.append(f"| {r['name']} | {r['model']} | {r['pairs']} | {r['split']} | {f(r['train_mse'])} | "
                     f"**{f(r['test_mse'])}** | {f(r['start_test_mse'])} | {f(r['mean_test_mse'])} | "
                     f"{f(r['truth_test_mse'])} | {ratio} | {r['fit_seconds']:.2f} |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, rows: list[dict]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        if rows:
            w = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
    tmp.replace(path)


def read_error_csv(path: Path, which: str = "test") -> dict[str, np.ndarray]:
    """Columns of ``error_vs_age.csv`` for one set; missing values become ``None`` columns."""
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["set"] == which]
    out = {}
    for key in ("target_age_days", "pairs", "model", "start", "mean", "truth"):
        vals = [r[key] for r in rows]
        out[key] = None if any(v == "" for v in vals) else np.array(vals, dtype=np.float64)
    return out


def _plain(obj):
    return json.loads(json.dumps(obj, default=str))


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    tmp.replace(path)
