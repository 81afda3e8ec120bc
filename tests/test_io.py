"""aging.io: atomic writes, validating readers, completion records, the kill hook."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
from PIL import Image

from aging import io
from aging.errors import AgingError, FileFormatError
from tests.harness import hidden_leftovers


def test_atomic_write_permissions_and_no_leftovers(tmp_path):
    p = tmp_path / "sub" / "a.json"
    io.write_json(p, {"b": np.float32(1.5), "a": (1, 2), "nan": float("nan"), "path": tmp_path})
    assert io.read_json(p) == {"a": [1, 2], "b": 1.5, "nan": None, "path": str(tmp_path)}
    mode = stat.S_IMODE(p.stat().st_mode)
    assert mode == 0o666 & ~_umask()  # not mkstemp's 0600
    assert os.listdir(p.parent) == ["a.json"]


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_failed_write_keeps_old_file(tmp_path):
    p = tmp_path / "x.txt"
    io.write_text(p, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_open(p, "w") as fh:
            fh.write("new, half")
            raise RuntimeError("disk full")
    assert p.read_text() == "old"
    assert hidden_leftovers(tmp_path) == []


def test_atomic_path_keeps_suffix_for_libraries(tmp_path):
    with io.atomic_path(tmp_path / "m.npz") as tmp:
        assert tmp.name.startswith(".") and tmp.suffix == ".npz" and not io.is_data_name(tmp.name)
        np.savez(tmp, a=np.arange(3))
    assert set(io.read_npz(tmp_path / "m.npz")) == {"a"}


def test_write_if_changed(tmp_path):
    p = tmp_path / "f"
    assert io.write_if_changed(p, "abc")
    ino = p.stat().st_mtime_ns
    assert not io.write_if_changed(p, "abc")
    assert p.stat().st_mtime_ns == ino
    assert io.write_if_changed(p, "abd")


@pytest.mark.parametrize("name,ok", [("7300.npy", True), ("0.npy", True), ("9_207.npy", False), ("-5.npy", False),
                                     ("+3.npy", False), ("7.3e3.npy", False), ("x.npy", False), ("٣.npy", False)])
def test_age_from_name(name, ok):
    if ok:
        assert io.age_from_name(name) == int(name.split(".")[0])
    else:
        with pytest.raises(FileFormatError, match="not an age in days"):
            io.age_from_name(name)


def test_data_files_skip_hidden_and_temporaries(tmp_path):
    for n in ("1.npy", ".9061.5336qh80.npy", ".2.ab12.tmp.npy", "3.npy.part", "4.npy"):
        (tmp_path / n).write_bytes(b"")
    assert [p.name for p in io.data_files(tmp_path, [".npy"])] == ["1.npy", "4.npy"]


def test_read_latent_validates(tmp_path):
    good = tmp_path / "1.npy"
    np.save(good, np.ones((2, 3), np.float64))
    arr = io.read_latent(good, (2, 3))
    assert arr.dtype == np.float32 and arr.shape == (2, 3)
    with pytest.raises(FileFormatError, match=r"shape \(2, 3\), expected \(3, 2\)"):
        io.read_latent(good, (3, 2))
    bad = tmp_path / "2.npy"
    np.save(bad, np.array([1.0, np.nan]))
    with pytest.raises(FileFormatError, match="NaN"):
        io.read_latent(bad)
    trunc = tmp_path / "3.npy"
    trunc.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(FileFormatError, match="3.npy: unreadable latent"):
        io.read_latent(trunc)
    strs = tmp_path / "4.npy"
    np.save(strs, np.array(["a"]))
    with pytest.raises(FileFormatError, match="dtype"):
        io.read_latent(strs)
    with pytest.raises(FileFormatError, match="no such latent"):
        io.read_latent(tmp_path / "5.npy")


def test_read_image_16bit_and_palette(tmp_path):
    ramp = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)  # 0 .. 63000
    p16 = tmp_path / "g16.png"
    Image.fromarray(ramp).save(p16)  # uint16 -> mode I;16
    rgb = io.read_image(p16)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    # scaled, not clipped: a clipped image would be 255 almost everywhere
    assert abs(int(rgb[7, 7, 0]) - round(63000 / 257)) <= 1
    assert (rgb[..., 0] == 255).mean() < 0.1
    pal = Image.fromarray(np.full((4, 4, 3), (10, 200, 30), np.uint8)).quantize()  # an adaptive palette
    pal.save(tmp_path / "p.png")
    assert tuple(io.read_image(tmp_path / "p.png")[0, 0]) == (10, 200, 30)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(FileFormatError, match="bad.png: unreadable image"):
        io.read_image(tmp_path / "bad.png")


def test_read_toml_utf8_and_schema(tmp_path):
    p = tmp_path / "e.toml"
    p.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(FileFormatError, match="not UTF-8"):
        io.read_toml(p)
    p.write_text('seed = "abc"\n')
    with pytest.raises(FileFormatError, match=r"e.toml: key 'seed' must be a whole number, got 'abc'"):
        io.read_toml(p, {"seed": int})
    p.write_text("seed = true\n")
    with pytest.raises(FileFormatError, match="whole number"):
        io.read_toml(p, {"seed": int})
    p.write_text("x = 1\n")
    assert io.read_toml(p, {"x": float}) == {"x": 1}
    p.write_text("x = [1\n")
    with pytest.raises(FileFormatError, match="not valid TOML"):
        io.read_toml(p)


def test_read_json_errors_and_default(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{")
    assert io.read_json(p, default=7) == 7
    with pytest.raises(FileFormatError, match="a.json: not valid JSON"):
        io.read_json(p)
    assert issubclass(FileFormatError, AgingError)


def test_completion_records(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.npz").write_bytes(b"12345")
    key = io.digest({"a": 1})
    io.write_record(out / "done.json", key, ["model.npz"])
    assert io.is_finished(out / "done.json", key)
    assert not io.is_finished(out / "done.json", io.digest({"a": 2}))
    (out / "model.npz").write_bytes(b"123")  # truncated output
    assert not io.is_finished(out / "done.json", key)
    (out / "model.npz").unlink()
    assert not io.is_finished(out / "done.json", key)
    assert not io.is_finished(tmp_path / "missing.json", key)


def test_sha256_arrays_sees_content():
    a = np.zeros((2, 3), np.float32)
    b = a.copy()
    b[1, 2] = 1e-7
    assert io.sha256_arrays(a) != io.sha256_arrays(b)
    assert io.sha256_arrays(a) != io.sha256_arrays(a.reshape(3, 2))


@pytest.mark.parametrize("spec,survives", [("2", ["0.txt", "1.txt"]), ("2-", ["0.txt"])])
def test_kill_hook(tmp_path, spec, survives):
    import subprocess

    code = ("from aging import io\n"
            "for k in range(4): io.write_text(f'{k}.txt', str(k))\n")
    env = {**os.environ, "AGING_KILL_AT_WRITE": spec}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env)
    assert r.returncode == -9
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == survives
    assert len(hidden_leftovers(tmp_path)) == (1 if spec.endswith("-") else 0)


def test_remove_temporaries_only_touches_temporaries(tmp_path):
    keep = ["7300.npy", ".hidden", ".7300.npy.part", "encode.png"]
    for n in keep:
        (tmp_path / n).write_bytes(b"x")
    ours = [io.temporary_name(tmp_path / "7300.npy"), io.temporary_name(tmp_path / "encode.options.json")]
    other = io.temporary_name(tmp_path / "7310.npy")
    for p in ours + [other]:
        p.write_bytes(b"half")
    assert io.temporary_stem(ours[1].name) == "encode.options"
    gone = io.remove_temporaries(tmp_path, stems=["7300", "encode.options"])
    assert sorted(gone) == sorted(ours)
    assert other.exists()
    assert io.remove_temporaries(tmp_path) == [other]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
