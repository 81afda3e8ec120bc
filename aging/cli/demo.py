"""``aging demo``: the offline demo, every age model on a synthetic dataset."""

from __future__ import annotations

import time
from pathlib import Path

import click

from aging.cli.common import PHOTOS, SEED, SUBJECTS, Command, quiet_option, write_options
from aging.synthetic import SynthConfig

DEFAULTS = SynthConfig()


@click.command(cls=Command)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/demo"),
              show_default=True)
@click.option("--subjects", default=DEFAULTS.subjects, show_default=True, type=SUBJECTS)
@click.option("--photos", default=DEFAULTS.photos, show_default=True, type=PHOTOS)
@click.option("--seed", default=DEFAULTS.seed, show_default=True, type=SEED)
@click.option("--experiment", default="demo", show_default=True, metavar="FILE|NAME")
@click.option("--force", is_flag=True, help="Recompute everything.")
@quiet_option
def demo(out, subjects, photos, seed, experiment, force, quiet):
    """Offline demo: synthesise a dataset, run every age model, write the comparison.

    A re-run with the same settings reuses everything and writes nothing.

    \b
    Example:
      aging demo                 # -> runs/demo/summary.md, comparison.md, *.png
    """
    from aging import io
    from aging.experiments import load_experiment, run_experiment
    from aging.latents import LatentDataset
    from aging.scoring import explained_variance
    from aging.synthetic import check_config, is_synthesized, synthesize

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
    summary = summary_markdown(rows, explained_variance(ds), ds)
    io.write_if_changed(out / "summary.md", summary)
    write_options(out, {"subjects": subjects, "photos": photos, "seed": seed, "experiment": str(exp.path)})
    click.echo("")
    click.echo(summary)
    click.echo(f"done in {time.perf_counter() - t0:.0f} s. Open {out}/summary.md, {out}/comparison.md "
               f"and the charts {out}/comparison.png, {out}/error_vs_age_*.png")


def _beating(rows: list[dict], baseline: str) -> str:
    """The names of the runs whose test MSE is below their own ``baseline`` column, comma separated."""
    return ", ".join(r["name"] for r in rows if r[baseline] is not None and r["test_mse"] < r[baseline])


def summary_markdown(rows: list[dict], explained: float, ds) -> str:
    """``summary.md``: the dataset, then per split the best run and the baselines, and what was skipped."""
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
                     + ". Models beating `start`: " + _beating(part, "start_test_mse") + "."
                     + (f" Beating the subject mean: {_beating(part, 'mean_test_mse') or 'none'}."
                        if best["mean_test_mse"] is not None else ""))
    skipped = [r for r in rows if r["skipped"]]
    if skipped:
        lines.append("* skipped (cannot apply to this dataset): "
                     + "; ".join(f"`{r['name']}`: {r['skipped']}" for r in skipped) + ".")
    lines += ["", "Full table: comparison.md. Charts: comparison.png, error_vs_age_<split>_<pairs>.png.", ""]
    return "\n".join(lines)


COMMANDS = [demo]
