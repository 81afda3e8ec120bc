"""Figs 8-12: offset regression on 10, half, three quarters and all components, selected by the
first / linear / norm rule; the study's protocol (first pairs, random 80/20 internal split) and,
with two subjects or more, held-out subjects (external split, each predicted from its first photo).

This toolkit numbers them Fig 8 (10 components), 9 (half), 10 (three quarters), 11 (all), each on
the internal split, and Fig 12 (every count on the external split).
"""

from __future__ import annotations

from pathlib import Path

from aging.experiments import RunConfig
from aging.figures.common import (Figure, dims_grid, plot_error_panels, run_all, table_columns, table_row,
                                  test_curve, write_table)
from aging.figures.linearity import fmt_noise

SELECTS = ("first", "linear", "norm")
STUDY_NUMBERS = ("8", "9", "10", "11")
PROTOCOL_NOTE = ("Protocol: first pairs (each subject's youngest photo -> every later photo), errors are MSE per "
                 "latent component on the test pairs, beside the baselines on the same pairs.")


def offset_configs(dim: int, seed: int) -> list[RunConfig]:
    """Every offset run of Figs 8-12 (internal and external; all components once per split)."""
    cfgs = []
    for split in ("internal", "external"):
        for dims in dims_grid(dim):
            for select in (("all",) if dims == dim else SELECTS):
                cfgs.append(RunConfig(name=f"offset-{select}-{dims}-{split}", model="offset",
                                      params={"select": select, "dims": dims}, pairs="first", split=split, seed=seed))
    return cfgs


def make_offset_figures(ds, out: Path, runs: Path, *, seed: int, noise: float | None,
                        progress: bool = False, echo=None) -> tuple[list[Figure], dict]:
    """Run the offset grid, write Figs 8-12 and ``tables/offset.{csv,md}``."""
    cfgs = offset_configs(ds.dim, seed)
    results = run_all(ds, cfgs, runs, progress=progress, echo=echo)
    done = [c for c in cfgs if isinstance(results[c.name], dict)]
    rows = [table_row(c, results[c.name], noise) for c in done]
    table = write_table(out, "offset", rows, table_columns(rows))

    def curves(split, dims):
        return {f"{c.params['select']} ({dims})": test_curve(runs / c.name) for c in done
                if c.split == split and c.params["dims"] == dims}

    figures = []
    grid = dims_grid(ds.dim)
    for number, dims in zip(STUDY_NUMBERS, grid):
        name = f"fig{int(number):02d}_offset_{dims}.png"
        what = "all" if dims == ds.dim else f"{dims} of {ds.dim}"
        plot_error_panels([(f"{what} components, internal split", curves("internal", dims))], out / name,
                          title=f"Fig {number}: offset regression on {what} components", noise=noise)
        figures.append(Figure(name, number, _caption(number, what, "internal", noise)))
    external = [(f"{d} components", curves("external", d)) for d in grid if curves("external", d)]
    if external:
        name = "fig12_offset_external.png"
        plot_error_panels(external, out / name, title="Fig 12: offset regression on held-out subjects", noise=noise)
        figures.append(Figure(name, "12", _caption("12", "10 / half / three quarters / all", "external", noise)))
    return figures, table


def _caption(number: str, what: str, split: str, noise: float | None) -> str:
    protocol = ("internal split: a random 80/20 split of the pairs, the study's protocol" if split == "internal"
                else "external split: each subject held out in turn and predicted from its first photo; the "
                     "study had one subject and no such test")
    return (f"Study Fig {number}: test error against target age of offset regression on {what} latent components "
            f"chosen first / most linear / normalised most linear. Here the same on this dataset, {protocol}. "
            f"{PROTOCOL_NOTE} The dotted line is the estimated per-photo encoding noise "
            f"({fmt_noise(noise)}): no model can beat it on average. 'norm' is the study's L2-normalised rule; the "
            f"study's figure numbering of component counts is assumed to follow 10 / half / three quarters / all.")
