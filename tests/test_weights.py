"""Checkpoint registry and downloads (against a local HTTP server), and the ``weights`` CLI."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aging.cli.weights import weights as weights_cli
from aging.stylegan import weights as W

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
TINY = FIXTURES / "stylegan2"
needs_fixture = pytest.mark.skipif(not TINY.is_dir(), reason="shared fixtures not available")

PAYLOAD = np.random.RandomState(0).bytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range`` except on /norange/; /flaky/ drops the first
    connection half-way; records every request in ``server.log``."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        rng = self.headers.get("Range")
        srv.log.append((self.path, rng))
        name = self.path.rsplit("/", 1)[-1]
        if name not in srv.files:
            self.send_error(404, "Not Found")
            return
        data = srv.files[name]
        start = 0
        if rng and "/norange/" not in self.path:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if "/flaky/" in self.path and srv.flaky_left > 0:
            srv.flaky_left -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files = {"net.pkl": PAYLOAD}
    srv.log = []
    srv.flaky_left = 1
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AGING_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fetch(url, **kw):
    return W.download_weights(url, progress=False, backoff=0.0, timeout=10, **kw)


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AGING_CACHE", str(tmp_path / "c"))
    assert W.weights_dir() == tmp_path / "c" / "weights"
    monkeypatch.delenv("AGING_CACHE")
    assert W.cache_dir() == Path.home() / ".cache" / "aging"
    assert W.cache_dir(tmp_path) == tmp_path


def test_registry_entries_are_well_formed():
    assert "stylegan2-ffhq-1024" in W.REGISTRY
    for name, w in W.REGISTRY.items():
        assert w.name == name and w.url.startswith("https://") and w.filename.endswith(".pkl")
        assert w.sha256 is None or len(w.sha256) == 64
    assert W.REGISTRY["stylegan2-ffhq-1024"].url.endswith("/stylegan2-ffhq-1024x1024.pkl")


def test_download_url_with_checksum(server, cache):
    path = fetch(f"{server.url}/files/net.pkl", sha256=SHA)
    assert path == cache / "weights" / "net.pkl" and path.read_bytes() == PAYLOAD
    assert list(path.parent.iterdir()) == [path]  # no .part left
    n = len(server.log)
    assert fetch(f"{server.url}/files/net.pkl", sha256=SHA) == path  # cached and verified: no request
    assert len(server.log) == n


def test_resume_from_partial_file_with_range(server, cache):
    part = cache / "weights" / "net.pkl.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:123_456])
    path = fetch(f"{server.url}/files/net.pkl", sha256=SHA)
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert server.log == [("/files/net.pkl", "bytes=123456-")]


def test_server_ignoring_range_restarts_cleanly(server, cache):
    part = cache / "weights" / "net.pkl.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 1000)  # stale junk: the server sends the whole file, which replaces it
    path = fetch(f"{server.url}/norange/net.pkl", sha256=SHA)
    assert path.read_bytes() == PAYLOAD


def test_complete_part_file_is_finished_without_download(server, cache):
    part = cache / "weights" / "net.pkl.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    path = fetch(f"{server.url}/files/net.pkl", sha256=SHA)
    assert path.read_bytes() == PAYLOAD and server.log == [("/files/net.pkl", f"bytes={len(PAYLOAD)}-")]


def test_dropped_connection_is_retried_and_resumed(server, cache):
    path = fetch(f"{server.url}/flaky/net.pkl", sha256=SHA, retries=2)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in server.log] == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_dropped_connection_without_retries_keeps_part_for_later(server, cache):
    with pytest.raises(W.WeightsError, match="download failed after 1 attempts"):
        fetch(f"{server.url}/flaky/net.pkl", retries=0)
    final = cache / "weights" / "net.pkl"
    assert not final.exists() and (cache / "weights" / "net.pkl.part").stat().st_size == len(PAYLOAD) // 2
    assert fetch(f"{server.url}/flaky/net.pkl", sha256=SHA).read_bytes() == PAYLOAD  # resumes


def test_checksum_mismatch_leaves_nothing(server, cache):
    with pytest.raises(W.WeightsError, match=f"sha256 mismatch \\(got {SHA}") as exc:
        fetch(f"{server.url}/files/net.pkl", sha256="0" * 64)
    assert "\n" not in str(exc.value)
    assert list((cache / "weights").iterdir()) == []


def test_404_is_a_clear_error_without_retries(server, cache):
    with pytest.raises(W.WeightsError, match="HTTP 404") as exc:
        fetch(f"{server.url}/files/missing.pkl", retries=3)
    assert "missing.pkl" in str(exc.value)
    assert len(server.log) == 1 and list((cache / "weights").iterdir()) == []


def test_registry_name_download_and_resolution(server, cache, monkeypatch):
    entry = W.KnownWeights(name="tiny-test", url=f"{server.url}/files/net.pkl", filename="tiny-test.pkl",
                           description="test", size=len(PAYLOAD), sha256=SHA)
    monkeypatch.setitem(W.REGISTRY, "tiny-test", entry)
    with pytest.raises(W.WeightsError, match="not downloaded yet; run `aging weights download tiny-test`"):
        W.resolve_generator("tiny-test")
    assert server.log == []  # nothing downloaded implicitly
    path = W.download_weights("tiny-test", progress=False)
    assert path == W.cached_path("tiny-test") and W.resolve_generator("tiny-test") == path
    bad = W.KnownWeights(name="bad-size", url=entry.url, filename="bad.pkl", description="", size=5)
    monkeypatch.setitem(W.REGISTRY, "bad-size", bad)
    with pytest.raises(W.WeightsError, match="got 300000 bytes, expected 5"):
        W.download_weights("bad-size", progress=False)
    assert not (cache / "weights" / "bad.pkl").exists()


def test_resolve_generator_errors(tmp_path, cache):
    f = tmp_path / "g.pkl"
    f.write_bytes(b"x")
    assert W.resolve_generator(f) == f and W.resolve_generator(str(f)) == f
    with pytest.raises(W.WeightsError, match="not a known checkpoint name .*aging weights list"):
        W.resolve_generator(tmp_path / "nope.pkl")
    with pytest.raises(W.WeightsError, match="not downloaded implicitly"):
        W.resolve_generator("https://example.org/x.pkl")
    with pytest.raises(W.WeightsError, match="aging weights download stylegan2-ffhq-1024"):
        W.resolve_generator("stylegan2-ffhq-1024")
    with pytest.raises(W.WeightsError, match="nor an http"):
        W.download_weights("no-such-model")


def test_download_options_are_checked_before_any_request(server, cache):
    with pytest.raises(W.WeightsError, match="expected 64 hexadecimal digits"):
        fetch(f"{server.url}/files/net.pkl", sha256="abc")
    with pytest.raises(W.WeightsError, match="retries must be a whole number >= 0"):
        fetch(f"{server.url}/files/net.pkl", retries=-1)
    assert server.log == [] and not (cache / "weights").exists()


def test_load_generator_does_not_download(cache):
    from aging.stylegan import load_generator

    with pytest.raises(W.WeightsError, match="not downloaded yet"):
        load_generator("stylegan2-ffhq-1024")


def test_weights_module_and_cli_do_not_import_torch():
    code = ("import sys, aging.stylegan.weights, aging.cli.weights; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_list_and_help(cache):
    runner = CliRunner()
    res = runner.invoke(weights_cli, ["list"])
    assert res.exit_code == 0, res.output
    assert "stylegan2-ffhq-1024" in res.output and "sha256 unknown" in res.output and str(cache) in res.output
    res = runner.invoke(weights_cli, ["convert", "--help"])
    assert res.exit_code == 0 and "aging weights convert" in res.output


def test_cli_download(server, cache):
    runner = CliRunner()
    res = runner.invoke(weights_cli, ["download", f"{server.url}/files/net.pkl", "--sha256", SHA])
    assert res.exit_code == 0, res.output
    assert f"sha256 {SHA}" in res.output and (cache / "weights" / "net.pkl").is_file()
    res = runner.invoke(weights_cli, ["download", f"{server.url}/files/gone.pkl", "--quiet"])
    assert res.exit_code != 0 and res.output.startswith("Error: ") and "HTTP 404" in res.output
    assert len(res.output.strip().splitlines()) == 1


@needs_fixture
def test_cli_convert_fixture(tmp_path):
    from aging.stylegan import load_generator

    runner = CliRunner()
    out = tmp_path / "tiny-own"
    res = runner.invoke(weights_cli, ["convert", str(TINY / "tiny.pkl"), str(out), "--seeds", "0-1"])
    assert res.exit_code == 0, res.output
    assert "parity on seeds 0,1: max abs diff ws 0, images 0" in res.output
    assert (out / "generator.pt").is_file() and json.loads((out / "generator.json").read_text())["num_ws"] == 10
    ref = np.load(TINY / "tiny_ref.npz")
    import torch

    G = load_generator(out)
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref["ws"]))
    assert np.abs(img.numpy() - ref["img"]).max() <= 1e-4
    res = runner.invoke(weights_cli, ["convert", str(TINY / "tiny.pkl"), str(out)])
    assert res.exit_code != 0 and "already exists" in res.output
    res = runner.invoke(weights_cli, ["convert", str(TINY / "tiny.pkl"), str(tmp_path / "g.pt"), "--entry", "D"])
    assert res.exit_code != 0 and "not a Generator" in res.output


def test_cli_convert_bad_files(tmp_path):
    runner = CliRunner()
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"definitely not a pickle\n")
    res = runner.invoke(weights_cli, ["convert", str(junk), str(tmp_path / "out")])
    assert res.exit_code != 0
    assert res.output.startswith("Error: ") and "unknown checkpoint format" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert isinstance(res.exception, SystemExit)  # a ClickException, not a traceback
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Evil(str(marker))}))
    res = runner.invoke(weights_cli, ["convert", str(evil), str(tmp_path / "out2")])
    assert res.exit_code != 0 and "refusing global" in res.output and not marker.exists()
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()
    res = runner.invoke(weights_cli, ["convert", str(tmp_path / "missing.pkl"), str(tmp_path / "o")])
    assert res.exit_code != 0 and "no such file" in res.output


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_web_page_instead_of_a_checkpoint_is_refused(server, cache):
    """A file host over its quota (Google Drive, for the StyleGAN v1 weights) answers with an HTML
    page: refused in one line, nothing left in the cache."""
    server.files["quota.pkl"] = b"\n<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title>"
    with pytest.raises(W.WeightsError, match="web page, not a checkpoint"):
        fetch(f"{server.url}/quota.pkl")
    assert not any(p.is_file() for p in cache.rglob("*"))
