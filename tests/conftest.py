"""Shared fixtures: small synthetic latent datasets (fast) and the path of ../shared/fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from aging.synthetic import SynthConfig, generate, write_dataset

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true`` a test skipped because ``../shared`` fixtures are missing fails instead:
    CI always has them beside the clone, so a skip there means a broken fixture path."""
    outcome = yield
    rep = outcome.get_result()
    if not rep.skipped or os.environ.get("CI") != "true" or not isinstance(rep.longrepr, tuple):
        return
    reason = str(rep.longrepr[2])
    if "shared" in reason.lower():
        rep.outcome = "failed"
        rep.longrepr = f"{item.nodeid}: {reason}, but CI=true: ../shared/fixtures must be beside the clone"


def small_config(**kw) -> SynthConfig:
    """3 subjects x 60 photos of (4, 32) latents: the shape of W+ in miniature."""
    base = dict(subjects=3, photos=60, shape=(4, 32), seed=0)
    base.update(kw)
    return SynthConfig(**base)


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: tiny networks run fastest so, and do not stall when other
    jobs share the cores (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def small_ds():
    ds, _ = generate(small_config())
    return ds


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory):
    ds, truth = generate(small_config())
    out = tmp_path_factory.mktemp("synth")
    write_dataset(ds, truth, out)
    return out


def write_subject(folder: Path, ages, shape=(2, 3), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for a in ages:
        np.save(folder / f"{a}.npy", rng.standard_normal(shape).astype(np.float32))
