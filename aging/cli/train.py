"""``aging train``: fit one age model on a latent dataset and score it beside the baselines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from aging.cli.common import SEED, Command, FiniteFloat, pop_fields, quiet_option, write_options
from aging.latents import MAX_PAIRS, PAIR_STRATEGIES, SPLITS, EvalProtocol
from aging.models import REGISTRY, SELECTIONS

PROTOCOL = EvalProtocol()  # the defaults of the options


def parse_param(text: str) -> tuple[str, object]:
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


def model_spec(model_name: str, select: str | None, dims: int | None, params: tuple[str, ...]) -> tuple[str, dict]:
    """The model's name and hyper-parameters from the options, checked by ``make_model``: an
    unknown name is a usage error naming the option it came from, a bad value the model's own
    error line."""
    from aging.models import ModelError, make_model

    model_params = dict(parse_param(p) for p in params)
    given = {key: value for key, value in (("select", select), ("dims", dims)) if value is not None}
    model_params.update(given)
    try:
        make_model(model_name, **model_params)  # before any work
    except ModelError as exc:
        if exc.unknown is None:
            raise
        option = "--model" if exc.unknown == "model" else f"--{exc.unknown}" if exc.unknown in given else "-p"
        raise click.UsageError(f"{option}: {exc}") from None
    return model_name, model_params


def _fmt(x) -> str:
    return "   –   " if x is None else f"{x:.4f}"


@click.command(cls=Command)
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_name", default="offset", show_default=True, metavar="NAME",
              help=f"Age model: {', '.join(sorted(REGISTRY))}.")
@click.option("--select", type=click.Choice(SELECTIONS), default=None,
              help="Component selection (offset, ridge, interp; mlp: --param features=...).")
@click.option("--dims", type=click.IntRange(1, None), default=None, help="Number of selected components.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Any other model hyper-parameter, e.g. -p hidden=1000 -p activation=tanh.")
@click.option("--pairs", type=click.Choice(PAIR_STRATEGIES), default=PROTOCOL.pairs, show_default=True,
              help="Pairing strategy.")
@click.option("--split", type=click.Choice(SPLITS), default=PROTOCOL.split, show_default=True,
              help="Train/test split.")
@click.option("--n-pairs", default=PROTOCOL.n_pairs, show_default=True, type=click.IntRange(1, MAX_PAIRS),
              help="Pairs drawn by --pairs random.")
@click.option("--min-gap", default=PROTOCOL.min_gap, show_default=True, type=click.IntRange(0, None),
              help="Minimum age gap (days) of random pairs.")
@click.option("--holdout", default=PROTOCOL.holdout, metavar="SUBJECT",
              help="External split: hold out only this subject.")
@click.option("--test-fraction", default=PROTOCOL.test_fraction, show_default=True,
              type=FiniteFloat(min=0, max=1, min_open=True, max_open=True))
@click.option("--seed", default=PROTOCOL.seed, show_default=True, type=SEED)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory [default: runs/<model>].")
@click.option("--force", is_flag=True, help="Recompute even if the run directory is finished.")
@quiet_option
def train(data: Path, out: Path | None, force: bool, quiet: bool, **options):
    """Fit an age model on a latent dataset, save it and evaluate it beside the baselines.

    Writes OUT/model.{json,npz}, metrics.json, error_vs_age.{csv,png}, then finished.json (the
    run's completion record: its settings and the dataset's content) and options.json. A
    finished run of the same settings on the same latents is reused and nothing is written.

    \b
    Examples:
      aging train data/synth --model offset --select linear --dims 4608 --pairs first --split internal -o runs/offset
      aging train data/synth --model mlp --pairs random --n-pairs 6100 --min-gap 30 -p hidden=1000 -o runs/mlp
      aging train data/synth --model direct --split external --holdout subject01
    \f
    ``options``: the fields of :class:`~aging.latents.EvalProtocol`, and the model's options
    (``model_name``, ``select``, ``dims``, ``params``: see :func:`model_spec`).
    """
    from aging.experiments import RunConfig, run_config
    from aging.latents import LatentDataset

    protocol = pop_fields(options, EvalProtocol)
    model, params = model_spec(**options)
    if protocol["holdout"] is not None and protocol["split"] != "external":
        raise click.UsageError("--holdout applies only to --split external")
    ds = LatentDataset.load(data)
    out = out or Path("runs") / model
    cfg = RunConfig(name=out.name, model=model, params=params, **protocol)
    t0 = time.perf_counter()
    metrics, reused = run_config(ds, cfg, out, progress=not quiet, force=force)
    write_options(out, {**cfg.as_dict(), "data": str(data)})
    report(cfg, metrics, f"{'reused finished run' if reused else 'trained'} {model} in "
                         f"{time.perf_counter() - t0:.1f} s")
    click.echo(f"wrote {out}/ (model.json, metrics.json, error_vs_age.png)")


def report(cfg, metrics: dict, what: str) -> None:
    """The run's errors beside the baselines' (train and test), under a line ``what``."""
    b = metrics["baselines"]
    click.echo(f"{what}: {metrics['n_train_pairs']} train / {metrics['n_test_pairs']} test pairs "
               f"({cfg.pairs}, {cfg.split})")
    click.echo("MSE per component   train    test")
    click.echo(f"  model {cfg.model:<11} {_fmt(metrics['train_mse'])}  {_fmt(metrics['test_mse'])}")
    for name in ("start", "mean", "truth"):
        click.echo(f"  baseline {name:<8} {_fmt(b[name]['train_mse'])}  {_fmt(b[name]['test_mse'])}")


COMMANDS = [train]
