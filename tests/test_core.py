"""The small core modules every stage shares: devices, progress bars, a subject's photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aging.devices import DeviceError, check_device_name, resolve_device
from aging.errors import AgingError
from aging.photos import PhotoError, read_photo, subject_photos
from aging.progress import progress_bar


def test_devices():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("tpu", "cuda:x", "", "CPU"):
        with pytest.raises(DeviceError, match="not a device"):
            check_device_name(bad)
    assert issubclass(DeviceError, AgingError)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--gpu cuda:1: CUDA is not available"):
            resolve_device("cuda:1", "--gpu")


def test_progress_bar_quiet():
    assert progress_bar(range(3), quiet=True).disable
    assert list(progress_bar(range(3), quiet=True)) == [0, 1, 2]


def _png(path, value=128, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def test_subject_photos_plain_folder_and_manifest(tmp_path):
    for a in (7300, 7310, 7320):
        _png(tmp_path / "s" / "aligned" / f"{a}.png")
    _png(tmp_path / "s" / "aligned" / ".7330.ab12cd34.tmp.png")
    got = subject_photos(tmp_path / "s")
    assert got.ages == [7300, 7310, 7320] and got.source == tmp_path / "s" / "aligned"
    # a manifest decides: 7310 excluded since, so it is not a photo even though its file is there
    (tmp_path / "s" / "manifest.csv").write_text(
        "index,photo,age_days,status,reason,file\n0,0,7300,kept,,aligned/7300.png\n"
        "1,1,7310,excluded,listed in exclude,\n2,2,7320,kept,,aligned/7320.png\n")
    assert subject_photos(tmp_path / "s").ages == [7300, 7320]
    _png(tmp_path / "p" / "7300.png")
    _png(tmp_path / "p" / "encode.png")
    assert subject_photos(tmp_path / "p", skip_names=["encode.png"]).ages == [7300]
    with pytest.raises(PhotoError, match="encode.png: image name is not an age"):
        subject_photos(tmp_path / "p")
    with pytest.raises(PhotoError, match="no such folder"):
        subject_photos(tmp_path / "missing")


def test_read_photo_resizes_with_a_box_filter(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, ::2] = 200  # stripes: a box filter averages them to 100
    Image.fromarray(img).save(tmp_path / "1.png")
    out = read_photo(tmp_path / "1.png", 4)
    assert out.shape == (4, 4, 3) and np.all(out == 100)
