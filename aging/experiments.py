"""Experiments: several model configurations on one latent dataset, one comparison.

An experiment is a TOML file (bundled ones: ``aging/configs/experiments/*.toml``, found by
name, e.g. ``--experiment study``)::

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

Each run is written to ``OUT/<run name>/`` exactly as ``aging train`` writes a run. A run is
finished when its completion record (``finished.json``, written last) holds the key of its
configuration and of the dataset's *content*; a finished run is reused, anything else is redone
from scratch. A run that cannot apply to the dataset (an external split of one subject, more
components than the latents have, ...) is skipped, with the reason in the comparison.
"""

from __future__ import annotations

import csv
import io as _stdio
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from aging import io
from aging.errors import AgingError, FileFormatError, one_line
from aging.latents import MAX_PAIRS, PAIR_STRATEGIES, SPLITS, EvalProtocol, LatentDataset
from aging.progress import progress_bar

RUN_SCHEMA = {"name": str, "model": str, "pairs": str, "split": str, "seed": int, "n_pairs": int,
              "min_gap": int, "holdout": str, "test_fraction": float}
RUN_KEYS = set(RUN_SCHEMA)
DEFAULTS_SCHEMA = {k: v for k, v in RUN_SCHEMA.items() if k not in ("name", "model")}
FILE_SCHEMA = {"name": str, "description": str, "defaults": dict, "run": list}
RECORD = "finished.json"  # completion record of a run folder and of an experiment folder
RUN_OUTPUTS = ("model.json", "model.npz", "metrics.json", "error_vs_age.csv", "error_vs_age.png")
RESERVED = {RECORD, "options.json", "comparison.md", "comparison.csv", "comparison.png", "summary.md", "data"}
_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHART = re.compile(r"^error_vs_age_[a-z]+_[a-z]+\.png$")


class ExperimentError(AgingError, ValueError):
    """A malformed experiment file (the message names the file and the run)."""


@dataclass(frozen=True, kw_only=True)
class RunConfig(EvalProtocol):
    """One run: a model (registry name and hyper-parameters) under an evaluation protocol.

    The options record of ``aging train`` and of each run of an experiment (``as_dict``)."""

    name: str
    model: str
    params: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Experiment:
    name: str
    runs: list[RunConfig]
    description: str = ""
    path: Path | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "runs": [r.as_dict() for r in self.runs]}


# ---------------------------------------------------------------------------------------------
# Experiment files
# ---------------------------------------------------------------------------------------------


def bundled_dir() -> Path:
    """The experiments shipped inside the package (``aging/configs/experiments``)."""
    from importlib import resources

    return Path(str(resources.files("aging").joinpath("configs", "experiments")))


def bundled_names() -> list[str]:
    folder = bundled_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def find_experiment(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or a name (``study``, ``study.toml``) looked up in
    ``./configs/experiments`` and then among the bundled experiments."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if len(p.parts) == 1 and p.suffix in ("", ".toml"):  # a name (a folder of that name is no file)
        for folder in (Path.cwd() / "configs" / "experiments", bundled_dir()):
            cand = folder / f"{p.stem}.toml"
            if cand.is_file():
                return cand
    if p.exists():
        raise ExperimentError(f"{p}: is a folder, not an experiment file")
    if len(p.parts) == 1 and p.suffix in ("", ".toml"):
        raise ExperimentError(f"{name_or_path}: no such experiment file (bundled experiments: "
                              f"{', '.join(bundled_names()) or 'none'})")
    raise ExperimentError(f"{name_or_path}: no such experiment file")


def check_folder_name(name: str, what: str) -> None:
    """``name`` becomes a folder: one plain path component, no ``/``, ``..`` or leading dot."""
    if not _FOLDER_NAME.match(name) or name in RESERVED:
        raise ExperimentError(f"{what} {name!r} is not usable as a folder name (letters, digits, '.', '_', '-'; "
                              f"not one of {', '.join(sorted(RESERVED))})")


def check_run(cfg: RunConfig, where: str) -> None:
    """Refuse run settings that cannot work on any dataset (one line starting with ``where``): the
    protocol's values here, the model's name and parameters by :func:`aging.models.make_model`."""
    from aging.models import ModelError, make_model

    if cfg.pairs not in PAIR_STRATEGIES:
        raise ExperimentError(f"{where}: unknown pairs {cfg.pairs!r} (known: {', '.join(PAIR_STRATEGIES)})")
    if cfg.split not in SPLITS:
        raise ExperimentError(f"{where}: unknown split {cfg.split!r} (known: {', '.join(SPLITS)})")
    if cfg.seed < 0:
        raise ExperimentError(f"{where}: seed must not be negative, got {cfg.seed}")
    if not 1 <= cfg.n_pairs <= MAX_PAIRS:
        raise ExperimentError(f"{where}: n_pairs must be between 1 and {MAX_PAIRS}, got {cfg.n_pairs}")
    if cfg.min_gap < 0:
        raise ExperimentError(f"{where}: min_gap must not be negative, got {cfg.min_gap}")
    if not (math.isfinite(cfg.test_fraction) and 0 < cfg.test_fraction < 1):
        raise ExperimentError(f"{where}: test_fraction must be strictly between 0 and 1, got {cfg.test_fraction}")
    try:
        make_model(cfg.model, **cfg.params)  # unknown names and bad values fail here, before any work
    except ModelError as exc:
        raise ExperimentError(f"{where}: {one_line(exc)}") from None


def load_experiment(name_or_path: str | Path) -> Experiment:
    """Read and check an experiment file; every mistake is one :class:`ExperimentError` line."""
    path = find_experiment(name_or_path)
    try:
        data = io.read_toml(path, FILE_SCHEMA, what="experiment file")
        defaults = data.get("defaults", {})
        io.check_schema(defaults, DEFAULTS_SCHEMA, f"{path}: [defaults]")
    except FileFormatError as exc:
        raise ExperimentError(str(exc)) from None
    runs_raw = data.get("run", [])
    if not runs_raw:
        raise ExperimentError(f"{path}: no [[run]] entries")
    taken: set[str] = set()
    runs = [_run_config(path, i, raw, defaults, taken) for i, raw in enumerate(runs_raw)]
    exp_name = data.get("name", path.stem)
    check_folder_name(exp_name, f"{path}: experiment name")
    return Experiment(name=exp_name, runs=runs, description=data.get("description", ""), path=path)


def _run_config(path: Path, i: int, raw, defaults: dict, taken: set[str]) -> RunConfig:
    """The ``i``-th ``[[run]]`` table of an experiment file over its ``[defaults]``, checked; its
    name must not be one of ``taken`` (the names of the runs before it), and is added to them."""
    if not isinstance(raw, dict):
        raise ExperimentError(f"{path}: run #{i + 1} must be a table ([[run]]), got {raw!r:.40}")
    merged = {**defaults, **raw}
    label = merged.get("name", merged.get("model", f"#{i + 1}"))
    where = f"{path}: run {label!r}" if isinstance(label, str) else f"{path}: run #{i + 1}"
    try:
        io.check_schema(merged, RUN_SCHEMA, where, allow_unknown=True)
    except FileFormatError as exc:
        raise ExperimentError(str(exc)) from None
    if "model" not in merged:
        raise ExperimentError(f"{where} has no 'model'")
    name = merged.get("name", merged["model"])
    check_folder_name(name, f"{path}: run name")
    if name in taken:
        raise ExperimentError(f"{path}: two runs named {name!r}")
    taken.add(name)
    params = {k: v for k, v in merged.items() if k not in RUN_KEYS}
    cfg = RunConfig(name=name, model=merged["model"], params=params,
                    **{k: merged[k] for k in RUN_KEYS - {"name", "model"} if k in merged})
    check_run(cfg, f"{path}: run {name!r}")
    return cfg


# ---------------------------------------------------------------------------------------------
# Running one configuration and writing a run directory (shared by `aging train`)
# ---------------------------------------------------------------------------------------------


def dataset_fingerprint(dataset: LatentDataset) -> dict:
    """What a run's results depend on in a dataset: its content (ages and latents, subject names
    and sizes, the noise-free truth when there is one), not its path."""
    return {
        "latents_sha256": io.sha256_arrays(dataset.ages, dataset.latents_flat),
        "latent_shape": list(dataset.latent_shape),
        "subjects": [[s.name, len(s)] for s in dataset.subjects],
        "truth_sha256": None if dataset.clean_flat is None else io.sha256_arrays(dataset.clean_flat),
    }


def run_key(cfg: RunConfig, fingerprint: dict) -> str:
    return io.digest({"format": "aging-run/1", "config": cfg.as_dict(), "data": fingerprint})


def run_config(dataset: LatentDataset, cfg: RunConfig, out_dir: Path, *, progress: bool = False,
               force: bool = False, fingerprint: dict | None = None) -> tuple[dict, bool]:
    """Fit, score and write ``out_dir`` (model, metrics, error-vs-age CSV and chart, then the
    completion record). Returns ``(metrics, reused)``.

    A finished run (record key = this configuration and this dataset content, every output
    there) is reused and nothing is written. Otherwise the model is fitted first (a user error
    leaves the folder as it was), then the old record and outputs are removed and the new ones
    written, the record last: a killed run is never taken for finished.
    """
    from aging.models import make_model
    from aging.scoring import fit_and_score

    out_dir = Path(out_dir)
    key = run_key(cfg, fingerprint or dataset_fingerprint(dataset))
    record = out_dir / RECORD
    io.remove_temporaries(out_dir)
    if not force and io.is_finished(record, key):
        metrics = io.read_json(out_dir / "metrics.json", default=None)
        if isinstance(metrics, dict):
            return metrics, True
    make_model(cfg.model, **cfg.params)  # a bad parameter fails before any work
    result = fit_and_score(dataset, lambda: make_model(cfg.model, **cfg.params), cfg, progress=progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    io.remove(record)
    for name in RUN_OUTPUTS:
        io.remove(out_dir / name)
    metrics = _write_run(cfg, result, out_dir)
    io.write_record(record, key, RUN_OUTPUTS)  # last: only now is the run finished
    return metrics, False


def _write_run(cfg: RunConfig, result, out_dir: Path) -> dict:
    """The outputs of a scored run (:class:`aging.scoring.ScoreResult`), all but its record."""
    from aging.render.charts import plot_error_vs_age

    result.model.save(out_dir)
    metrics = io.to_jsonable({**result.metrics, "name": cfg.name, "config": cfg.as_dict()})
    rows = ([{"set": "train", **r} for r in result.train.by_target_age()]
            + [{"set": "test", **r} for r in result.test.by_target_age()])
    io.write_csv(out_dir / "error_vs_age.csv", rows)
    te = result.test
    plot_error_vs_age(
        {cfg.name: (te.target_ages, te.model, None)},
        {k: (te.target_ages, v, None) for k, v in te.refs.items()},
        out_dir / "error_vs_age.png",
        title=f"{cfg.name}: {cfg.model}, {cfg.pairs} pairs, {cfg.split} split (test pairs)",
    )
    io.write_json(out_dir / "metrics.json", metrics)
    return metrics


# ---------------------------------------------------------------------------------------------
# An experiment: every run, then one comparison
# ---------------------------------------------------------------------------------------------


def run_experiment(dataset: LatentDataset, exp: Experiment, out_dir: Path, *, progress: bool = True,
                   force: bool = False, echo=print) -> list[dict]:
    """Run every configuration; write ``comparison.{md,csv}`` and the comparison charts.

    Returns one row per run; a run that cannot apply to ``dataset`` is not fitted and its row
    says why (``skipped``). A re-run with nothing changed writes nothing. ``progress``: progress
    bars (the experiment's, and those of each run).
    """
    out_dir = Path(out_dir)
    io.remove_temporaries(out_dir)
    fp = dataset_fingerprint(dataset)
    rows, keys = [], []
    bar = progress_bar(exp.runs, desc=f"experiment {exp.name}", quiet=not progress, leave=True)
    for cfg in bar:
        bar.set_postfix(run=cfg.name)
        keys.append(run_key(cfg, fp))
        try:
            metrics, reused = run_config(dataset, cfg, out_dir / cfg.name, progress=progress, force=force,
                                         fingerprint=fp)
        except AgingError as exc:  # this run cannot apply to this dataset; the others still can
            reason = one_line(exc)
            echo(f"{'skip':>6}  {cfg.name:<24} {reason}")
            rows.append(skipped_row(cfg, reason))
            continue
        echo(f"{'reused' if reused else 'ran':>6}  {cfg.name:<24} test MSE {_fmt(metrics['test_mse'])}"
             f"   (start {_fmt(metrics['baselines']['start']['test_mse'])})")
        rows.append(comparison_row(cfg, metrics))
    if not any(not r["skipped"] for r in rows):
        raise ExperimentError(f"{exp.path or exp.name}: no run applies to this dataset "
                              f"({rows[0]['name']}: {rows[0]['skipped']})")
    record = out_dir / RECORD
    key = io.digest({"format": "aging-experiment/1", "experiment": exp.as_dict(), "runs": keys,
                     "skipped": [r["skipped"] for r in rows]})
    if force or not io.is_finished(record, key):
        _write_comparison(exp, rows, out_dir, record, key)
    return rows


def _write_comparison(exp: Experiment, rows: list[dict], out_dir: Path, record: Path, key: str) -> None:
    from aging.render.charts import plot_comparison_bars, plot_error_vs_age

    done = [r for r in rows if not r["skipped"]]
    io.remove(record)
    io.write_csv(out_dir / "comparison.csv", rows, fieldnames=list(COMPARISON_COLUMNS), only_if_changed=True)
    io.write_if_changed(out_dir / "comparison.md", comparison_markdown(exp, rows))
    outputs = [out_dir / "comparison.csv", out_dir / "comparison.md"]
    # one chart per split and pairing: errors on different test pairs are not comparable
    for split, pairs in dict.fromkeys((r["split"], r["pairs"]) for r in done):
        names = [r["name"] for r in done if r["split"] == split and r["pairs"] == pairs]
        curves = {n: read_error_csv(out_dir / n / "error_vs_age.csv") for n in names}
        first = curves[names[0]]
        refs = {k: (first["target_age_days"], first.get(k), first["pairs"]) for k in ("start", "mean", "truth")}
        chart = out_dir / f"error_vs_age_{split}_{pairs}.png"
        plot_error_vs_age({n: (c["target_age_days"], c["model"], c["pairs"]) for n, c in curves.items()}, refs,
                          chart, title=f"{exp.name}: test error vs age ({split} split, {pairs} pairs)")
        outputs.append(chart)
    plot_comparison_bars(done, out_dir / "comparison.png", title=f"{exp.name}: test error per model")
    outputs.append(out_dir / "comparison.png")
    for p in out_dir.iterdir():  # charts of splits this experiment no longer has
        if _CHART.match(p.name) and p not in outputs:
            io.remove(p)
    io.write_record(record, key, [p.name for p in outputs])


COMPARISON_COLUMNS = ("name", "model", "pairs", "split", "params", "n_train_pairs", "n_test_pairs", "train_mse",
                      "test_mse", "start_test_mse", "mean_test_mse", "truth_test_mse", "vs_start", "fit_seconds",
                      "skipped")


def comparison_row(cfg: RunConfig, m: dict) -> dict:
    b = m["baselines"]
    start = b["start"]["test_mse"]
    return {
        "name": cfg.name, "model": cfg.model, "pairs": cfg.pairs, "split": cfg.split,
        "params": json.dumps(cfg.params, sort_keys=True),
        "n_train_pairs": m["n_train_pairs"], "n_test_pairs": m["n_test_pairs"],
        "train_mse": m["train_mse"], "test_mse": m["test_mse"],
        "start_test_mse": start, "mean_test_mse": b["mean"]["test_mse"], "truth_test_mse": b["truth"]["test_mse"],
        "vs_start": m["test_mse"] / start if start and m["test_mse"] is not None else None,
        "fit_seconds": m["fit_seconds"], "skipped": None,
    }


def skipped_row(cfg: RunConfig, reason: str) -> dict:
    row = dict.fromkeys(COMPARISON_COLUMNS)
    row.update(name=cfg.name, model=cfg.model, pairs=cfg.pairs, split=cfg.split,
               params=json.dumps(cfg.params, sort_keys=True), skipped=reason)
    return row


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.4f}"


def comparison_markdown(exp: Experiment, rows: list[dict]) -> str:
    lines = [f"# Experiment `{exp.name}`", ""]
    if exp.description:
        lines += [exp.description, ""]
    lines += ["Mean squared error per latent component. Baselines on the same test pairs: "
              "`start` = predict the start latent, `mean` = the subject's mean training latent, "
              "`truth` = the noise-free latent (synthetic data only; the noise floor).", "",
              "| run | model | pairs | split | train MSE | test MSE | start | mean | truth | test / start | fit s |",
              "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["skipped"]:
            continue
        ratio = "–" if r["vs_start"] is None else f"{r['vs_start']:.3f}"
        lines.append(f"| {r['name']} | {r['model']} | {r['pairs']} | {r['split']} | {_fmt(r['train_mse'])} | "
                     f"**{_fmt(r['test_mse'])}** | {_fmt(r['start_test_mse'])} | {_fmt(r['mean_test_mse'])} | "
                     f"{_fmt(r['truth_test_mse'])} | {ratio} | {r['fit_seconds']:.2f} |")
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        lines += ["", "Skipped: these runs cannot apply to this dataset.", ""]
        lines += [f"* skipped `{r['name']}` ({r['model']}, {r['pairs']} pairs, {r['split']} split): {r['skipped']}"
                  for r in skipped]
    return "\n".join(lines) + "\n"


def read_error_csv(path: Path, which: str = "test") -> dict[str, np.ndarray]:
    """Columns of ``error_vs_age.csv`` for one set; missing values become ``None`` columns."""
    text = io.read_text(path, "error-vs-age table")
    rows = [r for r in csv.DictReader(_stdio.StringIO(text, newline="")) if r.get("set") == which]
    out = {}
    for key in ("target_age_days", "pairs", "model", "start", "mean", "truth"):
        vals = [r.get(key) for r in rows]
        out[key] = None if any(v in ("", None) for v in vals) else np.array(vals, dtype=np.float64)
    return out
