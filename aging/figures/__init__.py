"""The study's figures, tables and report from a latent dataset (``aging figures``).

One module per figure family, each exposing a function that makes its figure from runs on disk
(:func:`aging.experiments.run_config` folders, reused when finished) or from the dataset:

* :mod:`.noise`      the per-photo encoding-noise floor, per subject and overall
* :mod:`.linearity`  Fig 3.3: two-point interpolation, line distance, step-variance spectrum
* :mod:`.offset`     Figs 8-12: offset regression by component count and selection
* :mod:`.mlp`        Fig 14: the MLP grid as a heat-map table
* :mod:`.direction`  Fig 15: a direction vector on held-out subjects
* :mod:`.models`     every model on the internal, future and external splits (a table)
* :mod:`.generated`  Fig 1 (faces with a generator, latent distances without) and the aging
                     videos of Figs 3.1/3.2 and 5.1/5.2 (with a generator)
* :mod:`.report`     report.md, report.html (self-contained) and report.json
* :mod:`.pipeline`   :func:`make_figures`, all of the above
"""

from aging.figures.common import FiguresOptions
from aging.figures.pipeline import make_figures

__all__ = ["FiguresOptions", "make_figures"]
