"""Helpers shared by the benchmark scripts: device timing and memory, and the JSON report.

The scripts run as ``python benchmarks/bench_*.py`` (this folder is then first on ``sys.path``).
"""

from __future__ import annotations

import json
import resource
from pathlib import Path


def sync(device) -> None:
    """Wait for queued CUDA work (timings must not stop before the GPU does)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> int:
    """Peak memory in bytes: CUDA allocations since the last :func:`reset_peak`, or on the CPU the
    process's peak resident set so far (it only grows)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB


def write_json(path: Path | None, report: dict, *, indent: int = 2) -> None:
    """Write ``report`` to ``path`` (creating its folder) and say so; nothing when ``path`` is None."""
    if path is None:
        return
    from aging import io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_text(path, json.dumps(report, indent=indent) + "\n")  # atomic, as every write of the project
    print(f"wrote {path}")
