"""Torch devices: the one place that turns ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` into a
device name and checks it (an ``AgingError`` line for a name that is not a device, or CUDA asked
for where there is none). torch is imported only when a device is resolved."""

from __future__ import annotations

import re

from aging.errors import AgingError

DEVICE_HELP = "cpu, cuda, cuda:N or auto (CUDA when available)."
_NAMES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")


class DeviceError(AgingError, ValueError):
    """A device name that is not one, or a CUDA device on a machine without CUDA."""


def check_device_name(name: str, option: str = "--device") -> str:
    """``name`` if it is a device name (no torch needed), else a :class:`DeviceError` line."""
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise DeviceError(f"{option} {name!r}: not a device (use {_NAMES})")
    return name


def resolve_device(name: str = "auto", option: str = "--device", *, local_rank: int | None = None) -> str:
    """The device to run on: ``auto`` is ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` with
    a ``local_rank`` (one process per GPU) is ``cuda:<local_rank>``. CUDA where there is none is a
    :class:`DeviceError`."""
    import torch

    check_device_name(name, option)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"{option} {name}: CUDA is not available on this machine")
        if name == "cuda" and local_rank is not None:
            name = f"cuda:{local_rank}"
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name
