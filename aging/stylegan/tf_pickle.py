"""Safe reading of NVIDIA's original StyleGAN (v1, TensorFlow) network pickles, with no TensorFlow.

Such a file (e.g. ``karras2019stylegan-ffhq-1024x1024.pkl``) is a tuple ``(G, D, Gs)`` of
``dnnlib.tflib.network.Network`` objects, each rebuilt by NVIDIA's loader from a plain state dict
(``version``, ``name``, ``static_kwargs``, ``components``, ``build_module_src``,
``build_func_name``, ``variables``: a list of ``(name, numpy array)``). NVIDIA's loader executes
``build_module_src``; this one never does. A restricted unpickler knows only the globals such a
file needs: the ``Network`` class (mapped to the inert :class:`TFNetworkState`, which keeps the
state dict and nothing else) and numpy's own array / dtype / scalar reconstruction functions
under their numpy 1 (``numpy.core.*``) and numpy 2 (``numpy._core.*``) names, each checked.
Anything else is refused before it can run.

:func:`read_tf_generator` returns the parts of ``Gs`` (the third entry) a StyleGAN v1 generator
is built from; :mod:`aging.stylegan.networks_v1` maps its variables by a strict name/shape table.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aging.stylegan.checkpoints import CheckpointError, RestrictedUnpickler, _numpy_scalar

TF_NETWORK_MARKER = b"dnnlib.tflib.network"
STATE_VERSIONS = (2, 3)
STATE_KEYS = {"version", "name", "static_kwargs", "components", "build_module_src", "build_func_name",
              "variables"}


class TFNetworkState:
    """Inert stand-in for ``dnnlib.tflib.network.Network``: keeps its pickled state dict only.

    The embedded ``build_module_src`` is kept as data and never looked at.
    """

    __slots__ = ("state",)

    def __setstate__(self, state):
        if hasattr(self, "state"):
            raise pickle.UnpicklingError("network state given twice")
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"network state is a {type(state).__name__}, not a dict")
        self.state = state

    def __repr__(self) -> str:
        state = getattr(self, "state", None) or {}
        return f"TFNetworkState({state.get('name')!r})"


class _NdarrayType:
    """What the unpickler gets for ``numpy.ndarray``: a marker, not callable, only accepted as the
    first argument of :func:`_reconstruct`."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


def _np_internals():
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _reconstruct(subtype, shape, dtype_code):
    """Checked ``numpy.core.multiarray._reconstruct``: an empty plain ndarray that BUILD fills."""
    if subtype is not _NDARRAY or not (isinstance(shape, tuple) and all(type(v) is int for v in shape)):
        raise pickle.UnpicklingError("numpy _reconstruct used for something other than a plain array")
    if not isinstance(dtype_code, bytes):
        raise pickle.UnpicklingError("malformed numpy _reconstruct call")
    return _np_internals()._reconstruct(np.ndarray, shape, dtype_code)


def _frombuffer(buf, dtype, shape, order):
    """Checked ``numpy.core.numeric._frombuffer`` (protocol 5 arrays): numeric data from bytes."""
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("only numeric numpy arrays from byte strings are allowed")
    if not (isinstance(shape, tuple) and all(type(v) is int and v >= 0 for v in shape)) or order not in ("C", "F"):
        raise pickle.UnpicklingError("malformed numpy array geometry")
    if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(buf):
        raise pickle.UnpicklingError("numpy array size does not match its data")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _dtype(*args):
    """Checked ``numpy.dtype``: no object dtypes."""
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("numpy object arrays are not allowed")
    return dt


TF_ALLOWED_GLOBALS = {("dnnlib.tflib.network", "Network"): TFNetworkState}
for _core in ("numpy.core", "numpy._core"):
    TF_ALLOWED_GLOBALS.update({
        (f"{_core}.multiarray", "_reconstruct"): _reconstruct,
        (f"{_core}.multiarray", "scalar"): _numpy_scalar,
        (f"{_core}.numeric", "_frombuffer"): _frombuffer,
    })
TF_ALLOWED_GLOBALS.update({("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _dtype})


class TFUnpickler(RestrictedUnpickler):
    """Unpickler whose ``find_class`` knows only :data:`TF_ALLOWED_GLOBALS`."""

    allowed = TF_ALLOWED_GLOBALS
    format_name = "a StyleGAN (TensorFlow) network pickle"


def is_tf_pickle(path: str | os.PathLike) -> bool:
    """True when the file starts like a pickle naming ``dnnlib.tflib.network`` (read, not run)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return head[:1] == b"\x80" and TF_NETWORK_MARKER in head


@dataclass(frozen=True)
class TFGenerator:
    """The parts of a pickled ``Gs`` that a StyleGAN v1 generator is built from.

    Attributes
    ----------
    static_kwargs, synthesis_kwargs, mapping_kwargs : dict
        Constructor arguments of ``G_style``, ``G_synthesis`` and ``G_mapping``.
    variables : dict
        ``"<name>"`` (``Gs``'s own), ``"G_synthesis/<name>"`` and ``"G_mapping/<name>"`` -> float32 array.
    """

    static_kwargs: dict
    synthesis_kwargs: dict
    mapping_kwargs: dict
    variables: dict


def _network_state(obj, what: str, build_func: str) -> dict:
    if not isinstance(obj, TFNetworkState) or not hasattr(obj, "state"):
        raise CheckpointError(f"{what} is {type(obj).__name__}, not a network")
    state = obj.state
    if set(state) != STATE_KEYS:
        raise CheckpointError(f"{what}: unexpected network state keys {sorted(map(str, state))}")
    if state["version"] not in STATE_VERSIONS:
        raise CheckpointError(f"{what}: unsupported network state version {state['version']!r}")
    if state["build_func_name"] != build_func:
        raise CheckpointError(f"{what}: built by {state['build_func_name']!r}, expected {build_func!r}")
    if not isinstance(state["static_kwargs"], dict) or not isinstance(state["components"], dict):
        raise CheckpointError(f"{what}: malformed static_kwargs or components")
    return state


def _variables(state: dict, prefix: str, what: str) -> dict:
    out = {}
    variables = state["variables"]
    if not isinstance(variables, (list, tuple)):
        raise CheckpointError(f"{what}: variables is not a list")
    for item in variables:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"{what}: malformed variable entry")
        name, value = item
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if not isinstance(value, np.ndarray) or value.dtype != np.float32:
            raise CheckpointError(f"{what}: variable {name!r} is not a float32 array")
        if prefix + name in out:
            raise CheckpointError(f"{what}: variable {name!r} given twice")
        out[prefix + name] = value
    return out


def read_tf_generator(path: str | os.PathLike) -> TFGenerator:
    """Read ``Gs`` from a StyleGAN v1 network pickle, safely (nothing in the file is executed).

    Raises
    ------
    CheckpointError
        One line naming the file: a refused global, a malformed file, or not a ``(G, D, Gs)`` tuple
        whose ``Gs`` is a ``G_style`` with ``synthesis`` and ``mapping`` components.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = TFUnpickler(f).load()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to decode untrusted bytes is a bad file
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"{path}: not a readable network pickle ({type(exc).__name__}: {first})") from None
    if not (isinstance(data, tuple) and len(data) == 3):
        raise CheckpointError(f"{path}: top level is not a (G, D, Gs) tuple of networks")
    try:
        gs = _network_state(data[2], "Gs", "G_style")
        comps = gs["components"]
        if set(comps) != {"synthesis", "mapping"}:
            raise CheckpointError(f"Gs: components {sorted(map(str, comps))}, expected synthesis and mapping")
        syn = _network_state(comps["synthesis"], "Gs synthesis", "G_synthesis")
        mapping = _network_state(comps["mapping"], "Gs mapping", "G_mapping")
        variables = _variables(gs, "", "Gs")
        variables.update(_variables(syn, "G_synthesis/", "Gs synthesis"))
        variables.update(_variables(mapping, "G_mapping/", "Gs mapping"))
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    return TFGenerator(dict(gs["static_kwargs"]), dict(syn["static_kwargs"]), dict(mapping["static_kwargs"]),
                       variables)


# ---------------------------------------------------------------------------------------------
# Constructor arguments -> GeneratorV1Config, and the generator

# NVIDIA argument -> GeneratorV1Config field.
_CONFIG_KWARGS = {
    "latent_size": "z_dim",
    "dlatent_size": "w_dim",
    "resolution": "img_resolution",
    "num_channels": "img_channels",
    "mapping_layers": "mapping_layers",
    "mapping_fmaps": "mapping_features",
    "mapping_lrmul": "mapping_lr_multiplier",
    "fmap_base": "fmap_base",
    "fmap_max": "fmap_max",
    "truncation_cutoff": "truncation_cutoff",
}
# Arguments that change the network: only the value this implementation computes is accepted.
_REQUIRED_KWARGS = {
    "label_size": 0, "fmap_decay": 1.0, "mapping_nonlinearity": "lrelu", "nonlinearity": "lrelu",
    "use_wscale": True, "normalize_latents": True, "use_styles": True, "const_input_layer": True,
    "use_noise": True, "use_pixel_norm": False, "use_instance_norm": True, "blur_filter": [1, 2, 1],
    "fused_scale": "auto", "dtype": "float32", "structure": None, "num_ws": None,
}
# Arguments for training or run-time choices only (the caller decides those here).
_IGNORED_KWARGS = {
    "truncation_psi", "truncation_psi_val", "truncation_cutoff_val", "dlatent_avg_beta", "style_mixing_prob",
    "randomize_noise", "is_training", "is_validation", "is_template_graph", "mapping_dlatent_broadcast",
    "structure", "dlatent_broadcast", "func_name",
}


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def tf_generator_config(parts: TFGenerator, *, where: str):
    """:class:`~.networks_v1.GeneratorV1Config` from the pickled constructor arguments; unknown
    arguments and unsupported values raise :class:`CheckpointError`."""
    from aging.stylegan.networks_v1 import GeneratorV1Config

    fields: dict = {}
    for kwargs in (parts.static_kwargs, parts.synthesis_kwargs, parts.mapping_kwargs):
        for key, value in kwargs.items():
            value = _plain(value)
            if key in _CONFIG_KWARGS:
                fields[_CONFIG_KWARGS[key]] = value
            elif key in _REQUIRED_KWARGS:
                required = _REQUIRED_KWARGS[key]
                if required is not None and value != required:
                    raise CheckpointError(f"{where}: {key}={value!r} is not supported (only {required!r})")
            elif key not in _IGNORED_KWARGS:
                raise CheckpointError(f"{where}: unknown StyleGAN v1 argument '{key}'={value!r}")
    try:
        config = GeneratorV1Config(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot build the generator: {exc}") from None
    broadcast = parts.mapping_kwargs.get("dlatent_broadcast")
    if broadcast is not None and int(broadcast) != config.num_ws:
        raise CheckpointError(f"{where}: dlatent_broadcast={broadcast}, expected {config.num_ws}")
    return config


def load_tf_pickle(path: str | os.PathLike):
    """Build a :class:`~.networks_v1.GeneratorV1` from ``Gs`` of a StyleGAN v1 network pickle.

    Returns the generator on the CPU, float32, in training mode (see
    :func:`aging.stylegan.load_generator`). Raises :class:`CheckpointError` naming the file.
    """
    from aging.stylegan.networks_v1 import GeneratorV1, tf_state_dict

    parts = read_tf_generator(path)
    where = f"{path}[Gs]"
    config = tf_generator_config(parts, where=where)
    G = GeneratorV1(config)
    try:
        state = tf_state_dict(config, parts.variables, where=where)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    G.load_state_dict(state, strict=True)
    return G
