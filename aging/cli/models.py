"""CLI of the latent-space stages: ``synth``, ``train``, ``evaluate``, ``demo``.

Each verb checks everything it can (options, the experiment file, the model's parameters, the
dataset) before it writes anything, and a re-run with nothing changed writes nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from aging.cli.common import Command, FiniteFloat, write_options

PAIRS = click.Choice(["first", "all", "random"])
SPLITS = click.Choice(["internal", "future", "external"])
SEED = click.IntRange(0, 2**32 - 1)
SUBJECTS = click.IntRange(1, 1000)
PHOTOS = click.IntRange(2, 100_000)
MAX_PAIRS = 10_000_000  # as aging.experiments.MAX_PAIRS (not imported: --help stays light)


def _parse_shape(ctx, param, text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(x) for x in text.lower().replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"not a shape: {text!r} (use e.g. 18,512)") from None
    if not shape or any(s < 1 for s in shape):
        raise click.BadParameter(f"not a shape: {text!r} (sizes must be positive, e.g. 18,512)")
    return shape


def _parse_param(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it can be (numbers, lists, null, true)."""
    if "=" not in text:
        raise click.UsageError(f"-p/--param: expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    low = value.strip().lower()
    if low in ("none", "null"):
        return key.strip(), None
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _fmt(x) -> str:
    return "   –   " if x is None else f"{x:.4f}"


# ---------------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--subjects", default=3, show_default=True, type=SUBJECTS, help="Number of subjects.")
@click.option("--photos", default=200, show_default=True, type=PHOTOS, help="Photos per subject.")
@click.option("--shape", default="18,512", show_default=True, callback=_parse_shape,
              help="Latent shape (W+ of the 1024 px generator).")
@click.option("--noise", default=0.5, show_default=True, type=FiniteFloat(min=0),
              help="Typical per-photo noise std of a component.")
@click.option("--trend", default=1.0, show_default=True, type=FiniteFloat(),
              help="Change of an age component over five years.")
@click.option("--age-fraction", default=0.1, show_default=True, type=FiniteFloat(min=0, max=1, min_open=True),
              help="Fraction of components that carry age.")
@click.option("--curvature", default=0.1, show_default=True, type=FiniteFloat(),
              help="Quadratic part of the age trajectory.")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--force", is_flag=True, help="Replace the latent dataset OUT holds (never a mix of the two).")
def synth(out, subjects, photos, shape, noise, trend, age_fraction, curvature, seed, force):
    """Write a synthetic latent dataset with known ground truth (truth.npz beside it).

    The dataset is written beside OUT and swapped in whole; OUT/synth.json records it. A re-run
    with the same settings writes nothing.

    \b
    Examples:
      aging synth data/synth
      aging synth data/synth-small --subjects 2 --photos 50 --shape 4,16 --noise 0.2
    """
    from aging.synthetic import RECORD, SynthConfig, synthesize

    cfg = SynthConfig(subjects=subjects, photos=photos, shape=shape, seed=seed, noise=noise,
                      trend=trend, age_fraction=age_fraction, curvature=curvature)
    made = synthesize(cfg, out, force=force)
    if made is None:
        click.echo(f"{out}: already holds this dataset ({RECORD}); nothing to do (--force writes it again)")
        return
    from aging.evaluate import explained_variance, lag1_autocorrelation

    ds, _ = made
    click.echo(f"wrote {subjects} subjects x {photos} latents {cfg.shape} to {out} (+ truth.npz)")
    click.echo(f"linear age trend explains {100 * explained_variance(ds):.1f} % of the within-subject "
               f"variance; residual lag-1 autocorrelation {lag1_autocorrelation(ds):+.3f}")


# ---------------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_name", default="offset", show_default=True, metavar="NAME",
              help="Age model: interp, direct, offset, ridge, mlp, direction.")
@click.option("--select", type=click.Choice(["first", "linear", "norm"]), default=None,
              help="Component selection (offset, ridge, interp; mlp: --param features=...).")
@click.option("--dims", type=click.IntRange(1, None), default=None, help="Number of selected components.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Any other model hyper-parameter, e.g. -p hidden=1000 -p activation=tanh.")
@click.option("--pairs", type=PAIRS, default="first", show_default=True, help="Pairing strategy.")
@click.option("--split", type=SPLITS, default="internal", show_default=True, help="Train/test split.")
@click.option("--n-pairs", default=6100, show_default=True, type=click.IntRange(1, MAX_PAIRS),
              help="Pairs drawn by --pairs random.")
@click.option("--min-gap", default=0, show_default=True, type=click.IntRange(0, None),
              help="Minimum age gap (days) of random pairs.")
@click.option("--holdout", default=None, metavar="SUBJECT", help="External split: hold out only this subject.")
@click.option("--test-fraction", default=0.2, show_default=True,
              type=FiniteFloat(min=0, max=1, min_open=True, max_open=True))
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory [default: runs/<model>].")
@click.option("--force", is_flag=True, help="Recompute even if the run directory is finished.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def train(data, model_name, select, dims, params, pairs, split, n_pairs, min_gap, holdout, test_fraction,
          seed, out, force, quiet):
    """Fit an age model on a latent dataset, save it and evaluate it beside the baselines.

    Writes OUT/model.{json,npz}, metrics.json, error_vs_age.{csv,png}, then finished.json (the
    run's completion record: its settings and the dataset's content) and options.json. A
    finished run of the same settings on the same latents is reused and nothing is written.

    \b
    Examples:
      aging train data/synth --model offset --select linear --dims 4608 --pairs first --split internal -o runs/offset
      aging train data/synth --model mlp --pairs random --n-pairs 6100 --min-gap 30 -p hidden=1000 -o runs/mlp
      aging train data/synth --model direct --split external --holdout subject01
    """
    from aging.experiments import RunConfig, run_config
    from aging.latents import LatentDataset
    from aging.models import REGISTRY, make_model

    if model_name not in REGISTRY:
        raise click.UsageError(f"--model: unknown model {model_name!r} (known: {', '.join(sorted(REGISTRY))})")
    model_params = dict(_parse_param(p) for p in params)
    for key, value in (("select", select), ("dims", dims)):
        if value is not None:
            if key not in REGISTRY[model_name].param_names():
                raise click.UsageError(f"--{key} does not apply to model {model_name}")
            model_params[key] = value
    unknown = [k for k in model_params if k not in REGISTRY[model_name].param_names()]
    if unknown:
        raise click.UsageError(f"-p: unknown parameter {unknown[0]!r} for model {model_name} "
                               f"(known: {', '.join(REGISTRY[model_name].param_names())})")
    if holdout is not None and split != "external":
        raise click.UsageError("--holdout applies only to --split external")
    make_model(model_name, **model_params)  # a bad parameter value: one line, before any work
    ds = LatentDataset.load(data)
    out = out or Path("runs") / model_name
    cfg = RunConfig(name=out.name, model=model_name, params=model_params, pairs=pairs, split=split, seed=seed,
                    n_pairs=n_pairs, min_gap=min_gap, holdout=holdout, test_fraction=test_fraction)
    t0 = time.perf_counter()
    metrics, reused = run_config(ds, cfg, out, progress=not quiet, force=force)
    write_options(out, {**cfg.as_dict(), "data": str(data)})
    b = metrics["baselines"]
    click.echo(f"{'reused finished run' if reused else 'trained'} {model_name} in {time.perf_counter() - t0:.1f} s: "
               f"{metrics['n_train_pairs']} train / {metrics['n_test_pairs']} test pairs ({pairs}, {split})")
    click.echo("MSE per component   train    test")
    click.echo(f"  model {model_name:<11} {_fmt(metrics['train_mse'])}  {_fmt(metrics['test_mse'])}")
    for name in ("start", "mean", "truth"):
        click.echo(f"  baseline {name:<8} {_fmt(b[name]['train_mse'])}  {_fmt(b[name]['test_mse'])}")
    click.echo(f"wrote {out}/ (model.json, metrics.json, error_vs_age.png)")


# ---------------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--experiment", default=None, metavar="FILE|NAME",
              help="Experiment TOML, or the name of a bundled one (demo, study) or of one in ./configs/experiments.")
@click.option("--linearity", is_flag=True, help="Linearity analysis of one subject instead.")
@click.option("--subject", default=None, help="Subject for --linearity [default: the first].")
@click.option("--anchors", default=None, metavar="I,J",
              help="Photo indices of the two anchors for --linearity (negative from the end) [default: 0,-1].")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory [default: runs/<experiment name> or runs/linearity].")
@click.option("--force", is_flag=True, help="Recompute runs that are already finished.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def evaluate(data, experiment, linearity, subject, anchors, out, force, quiet):
    """Compare many age models on one dataset, or analyse how linear a subject's latents are.

    An experiment writes one folder per run (as `aging train` does), a comparison table
    (comparison.md, comparison.csv) and charts (comparison.png, error_vs_age_<split>_<pairs>.png).
    Finished runs are reused on re-runs; a run that cannot apply to the dataset (an external
    split of one subject, more components than the latents have) is skipped, and the comparison
    says why.

    \b
    Examples:
      aging evaluate data/synth --experiment study -o runs/study
      aging evaluate data/synth --experiment my_experiment.toml
      aging evaluate data/synth --linearity --subject subject00 --anchors 0,-1
    """
    from aging.latents import LatentDataset

    if bool(experiment) == bool(linearity):
        raise click.UsageError("give exactly one of --experiment FILE and --linearity")
    if not linearity and (subject is not None or anchors is not None):
        raise click.UsageError("--subject and --anchors apply only to --linearity")
    if linearity:
        ds = LatentDataset.load(data)
        _linearity(ds, subject, anchors or "0,-1", out or Path("runs") / "linearity")
        return
    from aging.experiments import load_experiment, run_experiment

    exp = load_experiment(experiment)  # a bad file fails before the dataset is read
    ds = LatentDataset.load(data)
    out = out or Path("runs") / exp.name
    rows = run_experiment(ds, exp, out, progress=not quiet, force=force, echo=click.echo)
    write_options(out, {"data": str(data), "experiment": str(exp.path)})
    skipped = sum(1 for r in rows if r["skipped"])
    click.echo(f"wrote {out}/comparison.md, comparison.csv, comparison.png and error_vs_age_*.png"
               + (f" ({skipped} of {len(rows)} runs skipped: see comparison.md)" if skipped else ""))


def _linearity(ds, subject, anchors: str, out: Path):
    import numpy as np

    from aging.evaluate import check_anchors, linearity
    from aging.experiments import write_csv_if_changed
    from aging.latents import LatentDatasetError
    from aging.render.charts import plot_linearity

    try:
        i, j = (int(x) for x in anchors.split(","))
    except ValueError:
        raise click.UsageError(f"--anchors must be two photo indices like 0,-1, got {anchors!r}") from None
    try:
        k = ds.index_of(subject) if subject is not None else 0
    except LatentDatasetError as exc:
        raise click.UsageError(f"--subject: {exc}") from None
    s = ds.subjects[k]
    try:
        check_anchors((i, j), len(s), s.name)
        res = linearity(ds, k, (i, j))
    except ValueError as exc:
        raise click.UsageError(f"--anchors {anchors}: {exc}") from None
    write_csv_if_changed(out / f"linearity_{res['subject']}.csv",
                         [{"age_days": int(a), "distance": float(d)} for a, d in zip(res["ages"], res["distances"])])
    png = plot_linearity(res, out / f"linearity_{res['subject']}.png")
    mid = res["distances"][1:-1]
    click.echo(f"{res['subject']}: {len(res['ages'])} photos, anchors {res['anchors']}; distance from the "
               f"anchor line: median {float(np.median(mid)) if len(mid) else 0:.4f}, max {float(res['distances'].max()):.4f}")
    click.echo(f"wrote {png}")


# ---------------------------------------------------------------------------------------------


@click.command(cls=Command)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True)
@click.option("--subjects", default=3, show_default=True, type=SUBJECTS)
@click.option("--photos", default=200, show_default=True, type=PHOTOS)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--experiment", default="demo", show_default=True, metavar="FILE|NAME")
@click.option("--force", is_flag=True, help="Recompute everything.")
@click.option("-q", "--quiet", is_flag=True)
def demo(out, subjects, photos, seed, experiment, force, quiet):
    """Offline demo: synthesise a dataset, run every age model, write the comparison.

    A re-run with the same settings reuses everything and writes nothing.

    \b
    Example:
      aging demo                 # -> runs/demo/summary.md, comparison.md, *.png
    """
    from aging import io
    from aging.evaluate import explained_variance
    from aging.experiments import load_experiment, run_experiment
    from aging.latents import LatentDataset
    from aging.synthetic import SynthConfig, check_config, is_synthesized, synthesize

    t0 = time.perf_counter()
    exp = load_experiment(experiment)
    data = out / "data"
    cfg = SynthConfig(subjects=subjects, photos=photos, seed=seed)
    check_config(cfg)
    if force or not is_synthesized(data, cfg):
        click.echo(f"synthesising {subjects} subjects x {photos} latents {cfg.shape} -> {data}")
        synthesize(cfg, data, force=True)
    ds = LatentDataset.load(data)
    rows = run_experiment(ds, exp, out, progress=not quiet, force=force, echo=click.echo)
    summary = _demo_summary(exp, rows, explained_variance(ds), ds)
    io.write_if_changed(out / "summary.md", summary)
    write_options(out, {"subjects": subjects, "photos": photos, "seed": seed, "experiment": str(exp.path)})
    click.echo("")
    click.echo(summary)
    click.echo(f"done in {time.perf_counter() - t0:.0f} s. Open {out}/summary.md, {out}/comparison.md "
               f"and the charts {out}/comparison.png, {out}/error_vs_age_*.png")


def _demo_summary(exp, rows, explained, ds) -> str:
    lines = ["# aging demo: age models on synthetic latents", "",
             f"{len(ds.subjects)} subjects x {ds.num_photos // len(ds.subjects)} photos, latents {ds.latent_shape}; "
             f"a linear age trend explains {100 * explained:.1f} % of the within-subject variance "
             "(the study's real latents: about 2.5 %).", ""]
    done = [r for r in rows if not r["skipped"] and r["test_mse"] is not None]
    for split in dict.fromkeys(r["split"] for r in done):
        part = sorted((r for r in done if r["split"] == split), key=lambda r: r["test_mse"])
        best = part[0]
        lines.append(f"* **{split} split**: best `{best['name']}` test MSE {best['test_mse']:.4f}; "
                     f"baselines start {best['start_test_mse']:.4f}"
                     + (f", subject mean {best['mean_test_mse']:.4f}" if best["mean_test_mse"] is not None else "")
                     + (f", noise floor {best['truth_test_mse']:.4f}" if best["truth_test_mse"] is not None else "")
                     + ". Models beating `start`: "
                     + ", ".join(r["name"] for r in part if r["test_mse"] < r["start_test_mse"]) + ".")
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        lines.append("* skipped (cannot apply to this dataset): "
                     + "; ".join(f"`{r['name']}`: {r['skipped']}" for r in skipped) + ".")
    lines += ["", "Full table: comparison.md. Charts: comparison.png, error_vs_age_<split>_<pairs>.png.", ""]
    return "\n".join(lines)


COMMANDS = [synth, train, evaluate, demo]
