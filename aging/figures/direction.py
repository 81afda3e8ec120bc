"""Fig 15: a direction vector (start + years x scale x d) on held-out subjects.

``d`` is a file (Puzer's or InterFaceGAN's age vector: (512,), (1, 512) or the latent shape) or,
without one, learned from the training subjects (their pooled within-subject slope). On a
one-subject dataset there is no subject to hold out: the future split stands in.
"""

from __future__ import annotations

from pathlib import Path

from aging.experiments import RunConfig
from aging.figures.common import Figure, FiguresOptions, plot_error_panels, run_all, test_curve
from aging.figures.linearity import fmt_noise

FILE = "fig15_direction.png"


def direction_config(ds, opts: FiguresOptions) -> RunConfig:
    split = "external" if len(ds.subjects) >= 2 else "future"
    params = {} if opts.direction is None else {"direction": str(opts.direction)}
    return RunConfig(name=f"direction-{'file' if opts.direction else 'learned'}-{split}", model="direction",
                     params=params, pairs="first", split=split, seed=opts.seed)


def make_direction_figure(ds, out: Path, runs: Path, opts: FiguresOptions, *, noise: float | None,
                          progress: bool = False, echo=None) -> list[Figure]:
    """Run the direction model and write Fig 15 (a bad direction file is a one-line error)."""
    cfg = direction_config(ds, opts)
    result = run_all(ds, [cfg], runs, progress=progress, echo=echo)[cfg.name]
    if not isinstance(result, dict):
        from aging.figures.common import FiguresError

        raise FiguresError(f"Fig 15: {result}")
    source = f"the direction in {opts.direction}" if opts.direction else "a direction learned from the training subjects"
    plot_error_panels([(f"{cfg.split} split", {"direction": test_curve(runs / cfg.name)})], out / FILE,
                      title=f"Fig 15: {source.split(' in ')[0]}, {cfg.split} split", noise=noise)
    split_words = ("each subject held out in turn and predicted from its first photo" if cfg.split == "external"
                   else "future split: one subject only, so its later 20 % of photos are predicted from its "
                        "first photo (no subject to hold out)")
    caption = (f"Study Fig 15: the error of aging along a published age direction on external data. Here "
               f"{source}, {split_words}; test MSE per component {result['test_mse']:.4g} against "
               f"{result['baselines']['start']['test_mse']:.4g} for the start latent and the estimated noise "
               f"floor {fmt_noise(noise)} (dotted). The scale along the direction is fitted by least squares on "
               f"the training pairs.")
    return [Figure(FILE, "15", caption)]
