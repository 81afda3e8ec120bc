"""The age-model contract and its registry.

Every model follows scikit-learn's estimator conventions: ``__init__`` stores keyword
hyper-parameters under their own names and does nothing else; ``fit(pairs)`` validates them,
learns from a :class:`~aging.latents.PairSet` and returns ``self``; learned attributes end in
``_``; ``predict(start_latent, start_age, target_ages)`` returns one latent per target age.

Each model declares what its hyper-parameters accept (``_params``: name -> :class:`Param`);
:func:`make_model`, :meth:`AgeModel.fit` and :func:`load_model` check the values against it,
so a bad value is one :class:`ModelError` line naming the parameter and what it accepts.

Latents are flattened where they enter a model (``[D]``) and reshaped where they leave it.
Models save to a directory as ``model.json`` (name, hyper-parameters, shapes) plus
``model.npz`` (learned arrays, loaded with ``allow_pickle=False``): never pickles. Both are
written and read through :mod:`aging.io`.
"""

from __future__ import annotations

import abc
import inspect
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from aging import io as aio
from aging.errors import AgingError, FileFormatError

REGISTRY: dict[str, type["AgeModel"]] = {}
FORMAT = "aging-model/1"


class ModelError(AgingError, ValueError):
    """Bad model input: wrong latent shape, unknown parameter or value, unfitted model, bad file.

    ``unknown`` says what a name check refused: ``"model"`` (an unknown model name) or the
    unknown parameter's name; ``None`` for every other error. The CLI names the option at fault
    from it.
    """

    def __init__(self, message: str, *, unknown: str | None = None):
        super().__init__(message)
        self.unknown = unknown


def register(cls: type["AgeModel"]) -> type["AgeModel"]:
    """Class decorator: add a model to the registry under ``cls.name``."""
    if cls.name in REGISTRY:
        raise RuntimeError(f"model name {cls.name!r} registered twice")
    REGISTRY[cls.name] = cls
    return cls


# ---------------------------------------------------------------------------------------------
# Hyper-parameter values
# ---------------------------------------------------------------------------------------------


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_int(value) -> bool:
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    return (isinstance(value, (numbers.Real, np.floating, np.integer))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(float(value)))


@dataclass(frozen=True)
class Param:
    """What one hyper-parameter accepts.

    ``kind``: ``"int"`` (whole number), ``"float"`` (finite number), ``"floats"`` (a number or a
    non-empty list of numbers), ``"choice"`` (one of ``choices``), ``"path"`` (a file name).
    ``low``/``high`` bound numbers (``low_open``: strictly above ``low``, ``high_open``: strictly
    below ``high``); ``none``: ``None`` is accepted too.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    none: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(str(c) for c in self.choices)
        elif self.kind == "path":
            text = "a file name"
        else:
            what = {"int": "a whole number", "float": "a number",
                    "floats": "a number or a non-empty list of numbers"}[self.kind]
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {_num(self.low)}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {_num(self.high)}")
            text = what + (" " + " and ".join(bounds) if bounds else "")
        return text + (" or None" if self.none else "")

    def accepts(self, value) -> bool:
        if value is None:
            return self.none
        if self.kind == "choice":
            return isinstance(value, str) and value in self.choices
        if self.kind == "path":
            return isinstance(value, (str, os.PathLike)) and str(value) != ""
        if self.kind == "int":
            return _is_int(value) and self._in_range(int(value))
        if self.kind == "float":
            return _is_real(value) and self._in_range(float(value))
        if self.kind == "floats":
            values = [value] if not isinstance(value, (list, tuple, np.ndarray)) else list(np.ravel(value))
            return bool(values) and all(_is_real(v) and self._in_range(float(v)) for v in values)
        raise RuntimeError(f"unknown parameter kind {self.kind!r}")

    def _in_range(self, x: float) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        if self.high is not None and (x >= self.high if self.high_open else x > self.high):
            return False
        return True


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class AgeModel(abc.ABC):
    """Base class: parameter handling, shape checks, save/load."""

    name: ClassVar[str] = ""
    #: learned array attributes saved in ``model.npz`` (besides ``latent_shape_``)
    _state_arrays: ClassVar[tuple[str, ...]] = ()
    #: what each hyper-parameter accepts (every constructor argument has an entry)
    _params: ClassVar[dict[str, Param]] = {}

    # -- parameters ------------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in self.param_names()}

    def set_params(self, **params) -> "AgeModel":
        check_param_names(type(self), params)
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def validate_params(self) -> None:
        """Check every hyper-parameter value; a bad one is a one-line :class:`ModelError` naming
        the parameter and what it accepts."""
        for key in self.param_names():
            spec = self._params.get(key)
            value = getattr(self, key)
            if spec is not None and not spec.accepts(value):
                raise ModelError(f"model {self.name}: parameter {key} must be {spec.describe()}, "
                                 f"got {_short(value)}")
        self._check_params()

    def _check_params(self) -> None:
        """Checks that involve several parameters (subclasses)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # -- fitting / predicting ----------------------------------------------------------------
    @abc.abstractmethod
    def fit(self, pairs, *, progress: bool = False) -> "AgeModel":
        """Learn from a :class:`~aging.latents.PairSet`; return ``self``. ``progress``: show a
        progress bar where fitting takes long (the network model)."""

    @abc.abstractmethod
    def _predict_flat(self, start: np.ndarray, start_age: float, target_ages: np.ndarray) -> np.ndarray:
        """``start [D]``, ages in days -> ``[T, D]``."""

    def _begin_fit(self, pairs) -> None:
        """Validate the parameters and the training pairs; record the latent shape."""
        self.validate_params()
        ds = pairs.dataset
        where = f"{ds.root}: " if getattr(ds, "root", None) else ""
        if len(pairs) == 0:
            raise ModelError(f"{where}model {self.name}: no training pairs (every subject needs at least "
                             f"two photos of different ages)")
        seen = np.unique(np.concatenate([pairs.start, pairs.target]))
        lat = ds.latents_flat[seen]
        if np.array_equal(lat.min(axis=0), lat.max(axis=0)):
            raise ModelError(f"{where}all {len(seen)} training latents are identical: there is nothing "
                             f"to learn (check the encoder's output)")
        self.latent_shape_ = tuple(ds.latent_shape)

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

    def chosen(self) -> dict:
        """What the fit chose by itself (cross-validated values), recorded in ``metrics.json``;
        empty for a model that chooses nothing."""
        return {}

    # -- persistence ---------------------------------------------------------------------------
    def _get_state(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(getattr(self, k)) for k in self._state_arrays}

    @classmethod
    def _upgrade_state(cls, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Fill in arrays that older saves lack (subclasses); called before the missing check."""
        return arrays

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        for k in self._state_arrays:
            setattr(self, k, arrays[k])

    def _check_state(self) -> str | None:
        """After loading: what is inconsistent in the learned arrays (``None``: nothing)."""
        return None

    def save(self, directory: str | Path) -> Path:
        """Write ``model.npz`` then ``model.json`` into ``directory`` (atomically, each)."""
        self.check_fitted()
        directory = Path(directory)
        meta = {
            "format": FORMAT,
            "model": self.name,
            "params": self.get_params(),
            "latent_shape": list(self.latent_shape_),
        }
        aio.save_npz(directory / "model.npz", **self._get_state())
        aio.write_json(directory / "model.json", meta)
        return directory


def load_model(directory: str | Path) -> AgeModel:
    """Load a model saved by :meth:`AgeModel.save` (a run directory or its ``model.json``).

    Every problem (no or damaged ``model.json``, unknown model or parameter, a parameter value
    the model does not accept, an unreadable ``model.npz``, missing or inconsistent arrays) is a
    one-line :class:`ModelError` naming the file.
    """
    directory = Path(directory)
    if directory.is_file() and directory.suffix == ".json":
        directory = directory.parent
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise ModelError(f"{directory}: no model.json (not a saved model or run directory)")
    model = _described_model(meta_path, _read_model_file(aio.read_json, meta_path, "model description"))
    _load_state(model, directory / "model.npz", meta_path.name)
    return model


def _read_model_file(read, path: Path, what: str):
    """``read(path, what=what)`` (an :mod:`aging.io` reader), its file problems as a :class:`ModelError`."""
    try:
        return read(path, what=what)
    except FileFormatError as exc:
        raise ModelError(str(exc)) from None


def _described_model(meta_path: Path, meta) -> AgeModel:
    """The model a ``model.json`` describes: made with its parameters, its latent shape set."""
    if not isinstance(meta, Mapping):
        raise ModelError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise ModelError(f"{meta_path}: unknown model format {_short(meta.get('format'))} (expected {FORMAT})")
    try:
        cls = model_class(meta.get("model"))
    except ModelError as exc:
        raise ModelError(f"{meta_path}: {exc}") from None
    params = meta.get("params", {})
    if not isinstance(params, Mapping):
        raise ModelError(f"{meta_path}: 'params' must be an object, got {_short(params)}")
    shape = meta.get("latent_shape")
    if not (isinstance(shape, list) and shape and all(_is_int(s) and s >= 1 for s in shape)):
        raise ModelError(f"{meta_path}: 'latent_shape' must be a list of positive whole numbers, got {_short(shape)}")
    try:
        model = make_model(cls.name, **_from_json_params(cls, dict(params)))
    except ModelError as exc:
        raise ModelError(f"{meta_path}: {exc}") from None
    model.latent_shape_ = tuple(int(s) for s in shape)
    return model


def _load_state(model: AgeModel, npz_path: Path, described_by: str) -> None:
    """Set the learned arrays of ``model`` from its ``model.npz``, checked against its description."""
    arrays = type(model)._upgrade_state(_read_model_file(aio.read_npz, npz_path, "model archive"))
    missing = [k for k in model._state_arrays if k not in arrays]
    if missing:
        raise ModelError(f"{npz_path}: missing arrays {', '.join(missing)} (not saved by model {model.name}?)")
    try:
        model._set_state(arrays)
        problem = model._check_state()
    except (ValueError, TypeError, KeyError, IndexError, RuntimeError) as exc:
        problem = (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if problem:
        raise ModelError(f"{npz_path}: {problem} (the archive does not match {described_by})")


def model_class(name: str) -> type[AgeModel]:
    """The registered model class of ``name``; an unknown name is a :class:`ModelError`."""
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelError(f"unknown model {_short(name)} (known: {', '.join(sorted(REGISTRY))})", unknown="model")
    return cls


def make_model(name: str, **params) -> AgeModel:
    """Instantiate a registered model by name, validating the parameter names and values: the one
    place a model name and its parameters are checked (the CLI and the experiments call it)."""
    cls = model_class(name)
    check_param_names(cls, params)
    model = cls(**params)
    model.validate_params()
    return model


def check_param_names(cls: type[AgeModel], params: Mapping) -> None:
    """Refuse a parameter ``cls`` does not have (a :class:`ModelError` naming it and the known ones)."""
    known = cls.param_names()
    for key in params:
        if key not in known:
            raise ModelError(f"unknown parameter {key!r} for model {cls.name} (known: {', '.join(known) or 'none'})",
                             unknown=key)


def _from_json_params(cls, params: dict) -> dict:
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()}
    out = {}
    for k, v in params.items():
        if isinstance(defaults.get(k), tuple) and isinstance(v, list):
            v = tuple(v)
        out[k] = v
    return out


def check_array(model, key: str, shape: tuple, *, finite: bool = True) -> str | None:
    """A problem description when ``model.<key>`` does not have ``shape`` (``None`` entries: any
    size), is not numeric, or (``finite``) holds NaN or inf; ``None`` when it is fine."""
    arr = np.asarray(getattr(model, key))
    if arr.dtype.kind not in "biuf":
        return f"array {key} has dtype {arr.dtype}, expected numbers"
    if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        return f"array {key} has shape {arr.shape}, expected {want}"
    if finite and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        return f"array {key} contains NaN or inf"
    return None


def check_indices(model, key: str, dim: int) -> str | None:
    """A problem description when ``key`` is not a 1-D array of component indices below ``dim``."""
    arr = np.asarray(getattr(model, key))
    if arr.ndim != 1 or arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() >= dim)):
        return f"array {key} is not a list of component indices below {dim}"
    return None
