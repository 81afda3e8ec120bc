"""``make_figures``: a latent dataset -> every figure, table and the report under one folder.

Runs live in ``OUT/runs/<name>`` (:func:`aging.experiments.run_config`: a finished run whose
configuration and dataset content are unchanged is reused), figures are rendered in memory and
written only when their bytes changed, tables and report likewise: a finished re-run writes
nothing, and a changed dataset or option redoes only what depends on it.
"""

from __future__ import annotations

from pathlib import Path

from aging import io
from aging.figures.common import FiguresOptions
from aging.figures.direction import make_direction_figure
from aging.figures.generated import load_decoder, make_fig1, make_videos
from aging.figures.imagespace import make_imagespace_table
from aging.figures.linearity import make_linearity_figure
from aging.figures.mlp import make_mlp_figure
from aging.figures.models import make_models_table
from aging.figures.noise import noise_floor
from aging.figures.offset import make_offset_figures
from aging.figures.report import dataset_summary, environment, write_report


def make_figures(ds, out: str | Path, opts: FiguresOptions = FiguresOptions(), *, command: str = "",
                 progress: bool = False, echo=None) -> dict:
    """Write ``out/fig*.png``, ``out/tables/*``, ``out/report.{json,md,html}``; return the report."""
    out = Path(out)
    runs = out / "runs"
    for folder in (out, out / "tables"):
        io.remove_temporaries(folder)
    dec = load_decoder(ds, opts)  # a bad --generator / --photos fails before any run
    noise = noise_floor(ds)
    nf = noise["overall"]
    kw = dict(noise=nf, progress=progress, echo=echo)
    figures = [make_linearity_figure(ds, out, subject=opts.subject, anchors=opts.anchors, noise=nf)]
    offset_figs, offset_table = make_offset_figures(ds, out, runs, seed=opts.seed, **kw)
    mlp_figs, mlp_table = make_mlp_figure(ds, out, runs, opts, **kw)
    figures += offset_figs + mlp_figs + make_direction_figure(ds, out, runs, opts, **kw)
    models_table = make_models_table(ds, out, runs, opts, **kw)
    figures.insert(0, make_fig1(ds, out, runs, opts, dec))
    if dec is not None:
        figures += make_videos(ds, out, runs, opts, dec, models_table)
    tables = {"offset": offset_table, "mlp": mlp_table, "models": models_table}
    fit = sum(r.get("fit_seconds") or 0.0 for t in tables.values() for r in _metrics(runs, t["rows"]))
    if dec is not None:  # the decoded predictions scored in image space (identity, apparent age)
        tables["imagespace"] = make_imagespace_table(ds, out, runs, opts, dec, models_table)
    report = io.to_jsonable({
        "dataset": dataset_summary(ds), "noise_floor": noise, "tables": tables,
        "figures": [f.__dict__ for f in figures], "options": opts.__dict__, "environment": environment(),
        "command": command or f"aging figures {ds.root} -o {out}", "timings": {"fit_seconds": round(fit, 2)},
    })
    write_report(out, report)
    return report


def _metrics(runs: Path, rows: list[dict]):
    for r in rows:
        yield io.read_json(runs / r["run"] / "metrics.json", default={})
