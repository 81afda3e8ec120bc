"""Safe loading and saving of StyleGAN2 generator checkpoints.

Two formats are read:

* **NVIDIA network pickles** (``.pkl``) as written by the StyleGAN2-ADA / StyleGAN3 PyTorch
  releases (e.g. the FFHQ 1024 px model). They are untrusted input: unpickling them normally
  executes the Python source embedded in the file. Here a restricted unpickler allows only the
  handful of globals such a file needs (torch's tensor rebuilders, two numpy helpers, ``dict``-like
  containers) and turns every persisted network object into an inert :class:`PersistentObject`
  that only keeps its state; anything else is refused with :class:`CheckpointError` before it
  can run. The stand-in tree is then flattened into a state dict (own parameters, own buffers,
  children in order: the names of ``torch.nn.Module.state_dict``), the constructor arguments are
  read from ``_init_kwargs`` through an explicit table into a
  :class:`~.networks.GeneratorConfig`, and a :class:`~.networks.Generator` is built from it and
  loaded with ``strict=True``.
* **The project's own format**: ``generator.pt`` (a plain ``state_dict``, loadable with
  ``torch.load(..., weights_only=True)``) plus ``generator.json`` (the ``GeneratorConfig``'s fields),
  either in a directory or as a ``NAME.pt`` / ``NAME.json`` file pair. Written atomically
  (through :mod:`aging.io`) by :func:`save_generator`; a save/load round trip is bit-identical.

Every loader checks the tensors it builds a generator from: names, shapes, floating point, and
finite values (a checkpoint holding NaN or inf is refused, naming the file and the tensor). Every
error is one :class:`CheckpointError` line naming the file.
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import io
import os
import pickle
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from aging import io as aio
from aging.errors import AgingError, FileFormatError
from aging.io import sha256_file
from aging.stylegan.networks import Generator, GeneratorConfig

FORMAT_NAME = "aging.stylegan2.generator"
FORMAT_VERSION = 1
WEIGHTS_NAME = "generator.pt"
CONFIG_NAME = "generator.json"
DEFAULT_ENTRY = "G_ema"
ARCH_V2 = "stylegan2"  # own format: "architecture" absent (older files) means StyleGAN2
ARCH_V1 = "stylegan1"


class CheckpointError(AgingError, ValueError):
    """A checkpoint cannot be loaded: unsafe content, unknown format, or tensors that do not fit.

    The message is one line and names the file.
    """


# ---------------------------------------------------------------------------------------------
# The restricted unpickler


class PersistentObject:
    """Inert stand-in for one of NVIDIA's persistent network objects (a module, usually).

    Attributes
    ----------
    class_name : str
        The original class (``"Generator"``, ``"SynthesisLayer"``, ...), for messages only.
    state : dict
        The object's ``__dict__`` as pickled (``_parameters``, ``_buffers``, ``_modules``,
        ``_init_kwargs``, plain attributes). The embedded source code is dropped unread.
    """

    __slots__ = ("class_name", "state")

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    def __setstate__(self, state):  # a well-formed file never sends state separately
        raise pickle.UnpicklingError("unexpected state for a persistent network object")

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


def _reconstruct_persistent_obj(meta):
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: keep state only."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("malformed persistent object (expected meta['type'] == 'class')")
    class_name = meta.get("class_name")
    state = meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise pickle.UnpicklingError("malformed persistent object (no class_name or state)")
    return PersistentObject(class_name, state)  # meta['module_src'] is never looked at


def _load_storage_from_bytes(b):
    """Stand-in for ``torch.storage._load_from_bytes``, which calls ``torch.load`` unsafely."""
    if not isinstance(b, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not a byte string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notices
        storage = torch.load(io.BytesIO(bytes(b)), map_location="cpu", weights_only=True)
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError(f"tensor storage decodes to {type(storage).__name__}, not a storage")
    return storage


def _is_int_tuple(x) -> bool:
    return isinstance(x, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in x)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Checked stand-in for ``torch._utils._rebuild_tensor_v2``: plain tensors only, no hooks."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("tensor without a storage")
    if not (isinstance(storage_offset, int) and _is_int_tuple(size) and _is_int_tuple(stride)
            and len(size) == len(stride)):
        raise pickle.UnpicklingError("malformed tensor geometry")
    if backward_hooks or metadata:
        raise pickle.UnpicklingError("tensor with hooks or python attributes")
    if storage_offset < 0 or any(v < 0 for v in size + stride):
        raise pickle.UnpicklingError("negative tensor size, stride or offset")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # set_() would silently grow the storage: refuse views that reach past its end.
        end = storage_offset + sum((n - 1) * st for n, st in zip(size, stride)) + 1
        if 0 not in size and end > storage.size():
            raise pickle.UnpicklingError(f"tensor view needs {end} elements, storage has {storage.size()}")
        t = torch.empty((0,), dtype=storage.dtype)
        try:
            t.set_(storage._untyped_storage, storage_offset, size, stride)
        except RuntimeError as exc:  # out-of-bounds geometry
            raise pickle.UnpicklingError(f"bad tensor geometry: {exc}") from None
    return t


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Stand-in for ``torch._utils._rebuild_parameter``: the plain tensor (role comes from its dict)."""
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise pickle.UnpicklingError("malformed parameter")
    return data


def _numpy_scalar_fn():
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar
    return scalar


def _numpy_scalar(dtype, data=None):
    """Checked ``numpy.core.multiarray.scalar``: numeric scalars from raw bytes only."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only numeric numpy scalars are allowed")
    return _numpy_scalar_fn()(dtype, data)


def _codecs_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for byte strings (``str -> bytes`` only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected use of _codecs.encode")
    return codecs.encode(text, "latin1")


def _set(items=()):
    return set(items)


def _frozenset(items=()):
    return frozenset(items)


# (module, name) -> what the unpickler gets instead. Everything else is refused.
ALLOWED_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    # Protocol 2/3 files (Python 3.7, as the published pickles were written) spell sets and
    # byte strings through these.
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("__builtin__", "set"): _set,
    ("__builtin__", "frozenset"): _frozenset,
    ("_codecs", "encode"): _codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` knows only :attr:`allowed` (:data:`ALLOWED_GLOBALS`)."""

    allowed = ALLOWED_GLOBALS
    format_name = "a StyleGAN2 network pickle"

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise CheckpointError(f"refusing global '{module}.{name}': not part of {self.format_name} "
                                  "(the file may try to run code); nothing was executed") from None

    def persistent_load(self, pid):
        raise CheckpointError("refusing persistent id in a network pickle")


def read_network_pickle(path: str | os.PathLike) -> object:
    """Unpickle an NVIDIA network pickle safely; persisted networks become :class:`PersistentObject`.

    Raises
    ------
    CheckpointError
        Naming the file and the refused global or the decoding problem.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f).load()
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to decode untrusted bytes is a bad file
        raise CheckpointError(f"{path}: not a readable network pickle ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


# ---------------------------------------------------------------------------------------------
# Stand-in tree -> state dict + constructor arguments


def flatten_state(obj: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Walk a stand-in module tree like ``nn.Module.state_dict``: own parameters, own persistent
    buffers, then children in order, with dotted names."""
    out: dict[str, torch.Tensor] = {}
    _flatten_into(obj, prefix, out)
    return out


def _flatten_into(obj, prefix: str, out: dict) -> None:
    if not isinstance(obj, PersistentObject):
        raise CheckpointError(f"module '{prefix.rstrip('.') or '<root>'}' is a {type(obj).__name__}, "
                              "not a persisted network object")
    state = obj.state
    skip = state.get("_non_persistent_buffers_set") or set()
    for kind in ("_parameters", "_buffers"):
        table = state.get(kind) or {}
        if not isinstance(table, dict):
            raise CheckpointError(f"module '{prefix or '<root>'}': {kind} is not a dict")
        for name, t in table.items():
            if t is None or (kind == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise CheckpointError(f"'{prefix}{name}' is a {type(t).__name__}, not a tensor")
            out[prefix + name] = t
    children = state.get("_modules") or {}
    if not isinstance(children, dict):
        raise CheckpointError(f"module '{prefix or '<root>'}': _modules is not a dict")
    for name, child in children.items():
        if child is not None:
            _flatten_into(child, f"{prefix}{name}.", out)


# NVIDIA constructor argument -> GeneratorConfig field (None: accepted and ignored).
_MAPPING_KWARGS = {
    "num_layers": "mapping_layers",
    "layer_features": "mapping_features",
    "lr_multiplier": "mapping_lr_multiplier",
    "w_avg_beta": "w_avg_beta",
    "embed_features": None,  # only used by conditional generators
    "activation": None,  # checked below
}
_SYNTHESIS_KWARGS = {
    "channel_base": "channel_base",
    "channel_max": "channel_max",
    "num_fp16_res": "num_fp16_res",
    "conv_clamp": "conv_clamp",
    "use_noise": "use_noise",
    "resample_filter": "resample_filter",
    "architecture": None,  # checked below
    "activation": None,  # checked below
    "kernel_size": None,  # checked below
    "fused_modconv_default": None,  # a run-time speed choice
    "channels_last": None,  # memory layout only
    "fp16_channels_last": None,
}
_TOP_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
               "synthesis_kwargs")
_REQUIRED_VALUES = {"architecture": "skip", "activation": "lrelu", "kernel_size": 3}


def _plain(value):
    """numpy scalars / tuples -> plain JSON-able Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def generator_config(init_kwargs: dict, *, where: str = "Generator") -> dict:
    """Turn the ``_init_kwargs`` of NVIDIA's StyleGAN2 ``Generator`` into :class:`GeneratorConfig`
    fields (a dict of those the pickle sets; the others keep their defaults).

    Accepts both layouts: synthesis arguments in ``synthesis_kwargs`` (StyleGAN2-ADA) or at the
    top level (StyleGAN3's ``networks_stylegan2``). Unknown arguments, conditional generators and
    non-default architectures raise :class:`CheckpointError`.
    """
    if not isinstance(init_kwargs, dict):
        raise CheckpointError(f"{where}: no constructor arguments (_init_kwargs) in the pickle")
    kw = dict(init_kwargs)
    cfg: dict = {}
    for key in ("z_dim", "w_dim", "img_resolution"):
        if key not in kw:
            raise CheckpointError(f"{where}: constructor argument '{key}' missing")
        cfg[key] = int(_plain(kw[key]))
    cfg["img_channels"] = int(_plain(kw.get("img_channels", 3)))
    c_dim = int(_plain(kw.get("c_dim", 0)))
    if c_dim != 0:
        raise CheckpointError(f"{where}: conditional generator (c_dim={c_dim}) is not supported")

    mapping = dict(kw.get("mapping_kwargs") or {})
    synthesis = dict(kw.get("synthesis_kwargs") or {})
    for key, value in kw.items():  # StyleGAN3 layout: synthesis arguments at the top level
        if key not in _TOP_KWARGS:
            synthesis[key] = value

    for table, args, what in ((_MAPPING_KWARGS, mapping, "mapping"), (_SYNTHESIS_KWARGS, synthesis, "synthesis")):
        for key, value in args.items():
            if key not in table:
                raise CheckpointError(f"{where}: unknown {what} argument '{key}'={value!r}")
            value = _plain(value)
            if key in _REQUIRED_VALUES and value is not None and value != _REQUIRED_VALUES[key]:
                raise CheckpointError(f"{where}: {what} {key}={value!r} is not supported "
                                      f"(only {_REQUIRED_VALUES[key]!r})")
            if table[key] is not None:
                cfg[table[key]] = value
    if "w_avg_beta" in cfg and cfg["w_avg_beta"] is None:
        raise CheckpointError(f"{where}: generator without a tracked w_avg (w_avg_beta=None) is not supported")
    if cfg.get("conv_clamp") is not None:
        cfg["conv_clamp"] = float(cfg["conv_clamp"])
    return cfg


def _check_and_load(G: Generator, state: dict[str, torch.Tensor], where: str) -> Generator:
    """``load_state_dict(strict=True)`` after naming every unknown, missing, misshapen or
    non-finite tensor."""
    expected = G.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if unexpected:
            parts.append(f"{len(unexpected)} unknown tensor(s): {', '.join(unexpected[:5])}"
                         + (", ..." if len(unexpected) > 5 else ""))
        if missing:
            parts.append(f"{len(missing)} missing tensor(s): {', '.join(missing[:5])}"
                         + (", ..." if len(missing) > 5 else ""))
        raise CheckpointError(f"{where}: not a StyleGAN2 generator of this configuration: " + "; ".join(parts))
    for k, ref in expected.items():
        t = state[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise CheckpointError(f"{where}: tensor '{k}' has shape {list(t.shape)}, expected {list(ref.shape)}")
        if not t.is_floating_point():
            raise CheckpointError(f"{where}: tensor '{k}' has dtype {t.dtype}, expected floating point")
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{where}: tensor '{k}' holds {bad} NaN or inf value{'s' if bad != 1 else ''} "
                                  "(a broken or diverged checkpoint)")
    G.load_state_dict({k: state[k].to(torch.float32) for k in expected}, strict=True)
    return G


def load_network_pickle(path: str | os.PathLike, *, entry: str = DEFAULT_ENTRY) -> Generator:
    """Build a :class:`Generator` from one entry (default ``G_ema``) of an NVIDIA network pickle.

    Parameters
    ----------
    path : path-like
        A ``.pkl`` written by NVIDIA's StyleGAN2-ADA / StyleGAN3 training code.
    entry : str
        Top-level key to read: ``G_ema`` (the averaged generator everyone uses) or ``G``.

    Returns
    -------
    Generator
        On the CPU, float32, in training mode (see :func:`aging.stylegan.load_generator`).
    """
    path = Path(path)
    data = read_network_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: top level is a {type(data).__name__}, expected a dict of networks")
    if entry not in data:
        raise CheckpointError(f"{path}: no '{entry}' entry (has: {', '.join(map(str, data))})")
    obj = data[entry]
    if not isinstance(obj, PersistentObject) or obj.class_name != "Generator":
        raise CheckpointError(f"{path}: entry '{entry}' is {obj!r}, not a Generator")
    where = f"{path}[{entry}]"
    if obj.state.get("_init_args"):
        raise CheckpointError(f"{where}: positional constructor arguments are not supported")
    cfg = generator_config(obj.state.get("_init_kwargs"), where=where)
    try:
        G = Generator(GeneratorConfig(**cfg))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{where}: cannot build the generator: {exc}") from None
    return _check_and_load(G, flatten_state(obj), where)


# ---------------------------------------------------------------------------------------------
# The project's own format


def own_format_paths(path: Path) -> tuple[Path, Path]:
    """(weights, config) paths of the own format for a directory, ``X.pt`` or ``X.json``."""
    if path.suffix in (".pt", ".pth"):
        return path, path.with_suffix(".json")
    if path.suffix == ".json":
        return path.with_suffix(".pt"), path
    return path / WEIGHTS_NAME, path / CONFIG_NAME


def save_generator(G: Generator, out: str | os.PathLike, *, source: str | None = None) -> tuple[Path, Path]:
    """Write ``G`` in the project's format: a ``state_dict`` (``.pt``) and its config (``.json``).

    Parameters
    ----------
    G : Generator
    out : path-like
        A directory (gets ``generator.pt`` + ``generator.json``) or a ``NAME.pt`` path (gets
        ``NAME.pt`` + ``NAME.json``).
    source : str, optional
        Where the weights came from (recorded in the JSON).

    Returns
    -------
    (weights_path, config_path)
    """
    out = Path(out)
    weights_path, config_path = own_format_paths(out)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = collections.OrderedDict((k, v.detach().to("cpu", copy=True).contiguous())
                                    for k, v in G.state_dict().items())
    with aio.atomic_path(weights_path) as tmp:
        torch.save(state, tmp)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "weights": weights_path.name,
        "sha256": sha256_file(weights_path),
        "architecture": getattr(G, "architecture", ARCH_V2),
        "config": asdict(G.config),
        "num_ws": G.num_ws,
        "source": source,
    }
    aio.write_json(config_path, meta)  # last: a config names weights that are complete
    return weights_path, config_path


def state_digest(G: Generator) -> str:
    """sha256 (hex) of a generator's state dict (names, shapes, float32 values): which weights
    made a result, whatever file or format they were loaded from."""
    h = hashlib.sha256()
    for name, t in G.state_dict().items():
        t = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}{list(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_own_format(path: str | os.PathLike) -> Generator:
    """Load a generator written by :func:`save_generator` (directory, ``.pt`` or ``.json``).

    The ``config`` table of the JSON gives the :class:`GeneratorConfig` fields by name, so files
    written before the dataclass existed (the same keys) load unchanged.
    """
    path = Path(path)
    default_weights, config_path = own_format_paths(path)
    if not config_path.is_file():
        raise CheckpointError(f"{path}: config file {config_path.name} not found beside the weights")
    meta = _own_meta(config_path)
    weights_path = config_path.with_name(meta.get("weights", default_weights.name))
    if not weights_path.is_file():
        raise CheckpointError(f"{path}: weights file {weights_path.name} not found")
    state = _own_state(weights_path, meta.get("sha256"), config_path.name)
    try:
        G = _own_generator(meta)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{config_path}: bad generator config ({str(exc).splitlines()[0]})") from None
    return _check_and_load(G, state, str(weights_path))


def _own_generator(meta: dict):
    """An untrained generator of the architecture and config an own-format JSON names."""
    if meta.get("architecture", ARCH_V2) == ARCH_V1:
        from aging.stylegan.networks_v1 import GeneratorV1, GeneratorV1Config

        return GeneratorV1(GeneratorV1Config(**meta["config"]))
    return Generator(GeneratorConfig(**meta["config"]))


def _own_meta(config_path: Path) -> dict:
    """The checked JSON of an own-format checkpoint: format, version, a weights name beside it,
    a ``config`` table."""
    try:
        meta = aio.read_json(config_path, what="generator config")
    except FileFormatError as exc:
        raise CheckpointError(str(exc)) from None
    problem = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        problem = f'unknown checkpoint format (no "format": "{FORMAT_NAME}")'
    elif meta.get("version") != FORMAT_VERSION:
        problem = f"unsupported format version {meta.get('version')!r}"
    elif "weights" in meta and not _is_file_name(meta["weights"]):
        problem = f'"weights" must name a file beside it, got {meta["weights"]!r}'
    elif meta.get("architecture", ARCH_V2) not in (ARCH_V1, ARCH_V2):
        problem = f"unknown generator architecture {meta.get('architecture')!r}"
    elif not isinstance(meta.get("config"), dict):
        problem = 'no generator config ("config" is not a table)'
    if problem:
        raise CheckpointError(f"{config_path}: {problem}")
    return meta


def _is_file_name(name) -> bool:
    return isinstance(name, str) and aio.is_data_name(name) and Path(name).name == name


def _own_state(weights_path: Path, sha256: str | None, config_name: str) -> dict[str, torch.Tensor]:
    """The state dict of an own-format checkpoint, its checksum verified when recorded."""
    try:
        if sha256 and sha256_file(weights_path) != sha256:
            raise CheckpointError(f"{weights_path}: sha256 does not match {config_name} (corrupt or replaced)")
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad or unsafe files
        msg = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{weights_path}: not a loadable state dict ({msg})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{weights_path}: expected a dict of tensors")
    return state


# ---------------------------------------------------------------------------------------------
# Any format


def checkpoint_format(path: str | os.PathLike) -> str:
    """``"pickle"`` (NVIDIA StyleGAN2 network pickle), ``"tf_pickle"`` (NVIDIA StyleGAN v1
    TensorFlow pickle), ``"own"`` (project format), or raise CheckpointError."""
    path = Path(path)
    if path.is_dir():
        if (path / CONFIG_NAME).is_file():
            return "own"
        raise CheckpointError(f"{path}: unknown checkpoint format (directory without {CONFIG_NAME})")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if path.suffix == ".json":
        return "own"
    if head[:1] == b"\x80":  # pickle protocol >= 2
        from aging.stylegan.tf_pickle import is_tf_pickle

        return "tf_pickle" if is_tf_pickle(path) else "pickle"
    if head == b"PK\x03\x04":  # zip: torch.save
        return "own"
    raise CheckpointError(f"{path}: unknown checkpoint format (expected an NVIDIA .pkl, a directory or "
                          f".pt/.json pair written by 'aging weights convert')")


def load_checkpoint(path: str | os.PathLike, *, entry: str = DEFAULT_ENTRY) -> Generator:
    """Load a generator from any supported checkpoint file or directory (CPU, float32).

    Parameters
    ----------
    path : path-like
    entry : str
        For StyleGAN2 network pickles: the entry to read (``G_ema`` by default). StyleGAN v1
        (TensorFlow) pickles are always read from ``Gs``.
    """
    fmt = checkpoint_format(path)
    if fmt == "tf_pickle":
        if entry not in (DEFAULT_ENTRY, "Gs"):
            raise CheckpointError(f"{path}: a StyleGAN v1 pickle is read from its 'Gs' entry, not {entry!r}")
        from aging.stylegan.tf_pickle import load_tf_pickle

        return load_tf_pickle(path)
    if fmt == "pickle":
        return load_network_pickle(path, entry=entry)
    return load_own_format(path)
