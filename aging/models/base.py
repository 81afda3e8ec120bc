"""The age-model contract and its registry.

Every model follows scikit-learn's estimator conventions: ``__init__`` stores keyword
hyper-parameters under their own names and does nothing else; ``fit(pairs)`` learns from a
:class:`~aging.latents.PairSet` and returns ``self``; learned attributes end in ``_``;
``predict(start_latent, start_age, target_ages)`` returns one latent per target age.

Latents are flattened where they enter a model (``[D]``) and reshaped where they leave it.
Models save to a directory as ``model.json`` (name, hyper-parameters, shapes) plus
``model.npz`` (learned arrays, loaded with ``allow_pickle=False``): never pickles.
"""

from __future__ import annotations

import abc
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
from aging.errors import AgingError

REGISTRY: dict[str, type["AgeModel"]] = {}
FORMAT = "aging-model/1"


class ModelError(AgingError, ValueError):
    """Bad model input: wrong latent shape, unknown parameter, unfitted model, bad file."""


def register(cls: type["AgeModel"]) -> type["AgeModel"]:
    """Class decorator: add a model to the registry under ``cls.name``."""
    if cls.name in REGISTRY:
        raise RuntimeError(f"model name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


class AgeModel(abc.ABC):
    """Base class: parameter handling, shape checks, save/load."""

    name: ClassVar[str] = ""
    #: learned array attributes saved in ``model.npz`` (besides ``latent_shape_``)
    _state_arrays: ClassVar[tuple[str, ...]] = ()

    # -- parameters ------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params) -> "AgeModel":
        for k, v in params.items():
            if k not in self.param_names():
                raise ModelError(f"unknown parameter {k!r} for model {self.name} "
                                 f"(known: {', '.join(self.param_names())})")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting / predicting ----------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, pairs) -> "AgeModel":
        """Learn from a :class:`~aging.latents.PairSet`; return ``self``."""

    @abc.abstractmethod
    def _predict_flat(self, start: np.ndarray, start_age: float, target_ages: np.ndarray) -> np.ndarray:
        """``start [D]``, ages in days -> ``[T, D]``."""

    def _begin_fit(self, pairs) -> None:
        if len(pairs) == 0:
            raise ModelError(f"model {self.name}: no training pairs")
        self.latent_shape_ = tuple(pairs.dataset.latent_shape)

    def check_fitted(self) -> None:
        if not hasattr(self, "latent_shape_"):
            raise ModelError(f"model {self.name} is not fitted yet: call fit() first")

    def predict(self, start_latent, start_age, target_ages) -> np.ndarray:
        """Predict the latent at each target age.

        Parameters
        ----------
        start_latent : array, the model's latent shape (e.g. ``[18, 512]``) or flat ``[D]``
        start_age : int, days
        target_ages : int or array of ints ``[T]``, days

        Returns
        -------
        array ``[T, *latent_shape]`` float32
        """
        self.check_fitted()
        start = np.asarray(start_latent, dtype=np.float32)
        dim = int(np.prod(self.latent_shape_))
        if start.shape != self.latent_shape_ and start.shape != (dim,):
            raise ModelError(
                f"wrong latent shape {start.shape}: model {self.name} was fitted on {self.latent_shape_}"
            )
        targets = np.atleast_1d(np.asarray(target_ages, dtype=np.float64))
        out = self._predict_flat(start.reshape(-1), float(start_age), targets)  # [T, D]
        return np.asarray(out, dtype=np.float32).reshape((len(targets),) + self.latent_shape_)

    # -- persistence ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k)) for k in self._state_arrays}

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        for k in self._state_arrays:
            setattr(self, k, arrays[k])

    def save(self, directory: str | Path) -> Path:
        """Write ``model.json`` + ``model.npz`` into ``directory`` (atomically, each)."""
        self.check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "model": self.name,
            "params": _jsonable(self.get_params()),
            "latent_shape": list(self.latent_shape_),
        }
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".model.", suffix=".npz")
        os.close(fd)
        np.savez(tmp, **self._get_state())
        os.replace(tmp, directory / "model.npz")
        _write_text_atomic(directory / "model.json", json.dumps(meta, indent=2) + "\n")
        return directory


def load_model(directory: str | Path) -> AgeModel:
    """Load a model saved by :meth:`AgeModel.save` (a run directory or its ``model.json``)."""
    directory = Path(directory)
    if directory.is_file() and directory.suffix == ".json":
        directory = directory.parent
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise ModelError(f"{directory}: no model.json (not a saved model or run directory)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{meta_path}: not valid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: unknown model format {meta.get('format')!r} (expected {FORMAT})")
    cls = REGISTRY.get(meta.get("model"))
    if cls is None:
        raise ModelError(f"{meta_path}: unknown model {meta.get('model')!r} (known: {', '.join(sorted(REGISTRY))})")
    model = cls(**_from_json_params(cls, meta["params"]))
    try:
        with np.load(directory / "model.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{directory / 'model.npz'}: unreadable ({exc})") from None
    missing = [k for k in cls._state_arrays if k not in arrays]
    if missing:
        raise ModelError(f"{directory / 'model.npz'}: missing arrays {', '.join(missing)}")
    model.latent_shape_ = tuple(meta["latent_shape"])
    model._set_state(arrays)
    return model


def make_model(name: str, **params) -> AgeModel:
    """Instantiate a registered model by name, validating the parameter names."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise ModelError(f"unknown model {name!r} (known: {', '.join(sorted(REGISTRY))})")
    unknown = [k for k in params if k not in cls.param_names()]
    if unknown:
        raise ModelError(f"unknown parameter {unknown[0]!r} for model {name} "
                         f"(known: {', '.join(cls.param_names())})")
    return cls(**params)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _from_json_params(cls, params: dict) -> dict:
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()}
    out = {}
    for k, v in params.items():
        if isinstance(defaults.get(k), tuple) and isinstance(v, list):
            v = tuple(v)
        out[k] = v
    return out


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
