"""Age models in latent space, behind one registry (``REGISTRY``: name -> class).

``make_model(name, **params)`` builds one, ``load_model(directory)`` reloads a saved one.
"""

from aging.models.base import REGISTRY, AgeModel, ModelError, load_model, make_model, register
from aging.models import direction, interpolate, mlp, regression, trend  # noqa: F401  (registers models)
from aging.models.components import SELECTIONS, select_components, step_variances

__all__ = ["REGISTRY", "AgeModel", "ModelError", "load_model", "make_model", "register",
           "SELECTIONS", "select_components", "step_variances"]
