"""Weights management: git blob ids, downloads (over a real local HTTP server), resolution."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hydranet_ros import weights
from hydranet_ros.cli.weights import main as weights_main
from hydranet_ros.presets import OfficialWeights, get_preset


@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 5000])
def test_git_blob_id_matches_git(tmp_path, content):
    path = tmp_path / "f.bin"
    path.write_bytes(content)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert weights.git_blob_id(path) == expected


def test_git_blob_id_of_a_checkpoint_and_cli(make_checkpoint, capsys):
    path = make_checkpoint(6, 2)
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert weights_main(["verify", str(path)]) == 0
    assert f"git blob {expected} (not an official checkpoint)" in capsys.readouterr().out
    assert weights_main(["verify", str(path), "--expect", expected]) == 0
    assert weights_main(["verify", str(path), "--expect", "kitti"]) == 1


class Server:
    """A loopback HTTP server with files in memory; ``short`` announces more than it sends."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.short = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (100 if server.short else 0)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "hydranet_ros"


def blob_of(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "blob.tmp"
    path.write_bytes(data)
    return weights.git_blob_id(path)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_file_verifies_and_writes_atomically(server, tmp_path, make_checkpoint):
    data = make_checkpoint(6, 2).read_bytes()
    server.files["/w.ckpt"] = data
    dest = tmp_path / "dl" / "w.ckpt"
    weights.download_file(f"{server.url}/w.ckpt", dest, blob_of(data, tmp_path), progress=False)
    assert dest.read_bytes() == data
    assert leftovers(dest.parent) == ["w.ckpt"]


def test_download_rejects_wrong_content_and_keeps_nothing(server, tmp_path):
    server.files["/w.ckpt"] = b"tampered"
    dest = tmp_path / "dl" / "w.ckpt"
    with pytest.raises(weights.WeightsError, match="failed verification: git blob id [0-9a-f]{40}, "
                                                   "expected 0{40}; nothing was kept"):
        weights.download_file(f"{server.url}/w.ckpt", dest, "0" * 40, progress=False)
    assert leftovers(dest.parent) == []


def test_download_rejects_short_transfer(server, tmp_path):
    server.files["/w.ckpt"] = b"x" * 1000
    server.short = True
    dest = tmp_path / "dl" / "w.ckpt"
    with pytest.raises(weights.WeightsError):
        weights.download_file(f"{server.url}/w.ckpt", dest, blob_of(b"x" * 1000, tmp_path),
                              progress=False)
    assert leftovers(dest.parent) == []


def test_offline_is_one_clear_line(tmp_path, cache, monkeypatch):
    monkeypatch.setenv(weights.URL_ENV, "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(weights.WeightsError) as info:
        weights.download("kitti", progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("cannot download http://127.0.0.1:9/ExpKITTI_joint.ckpt")
    assert "offline?" in message
    assert leftovers(cache) == []


def test_http_error_is_reported(server, cache, monkeypatch):
    monkeypatch.setenv(weights.URL_ENV, server.url)
    with pytest.raises(weights.WeightsError, match="cannot download .*ExpKITTI_joint.ckpt: Not Found"):
        weights.download("kitti", progress=False)


def test_official_url_is_the_release_repository():
    assert weights.download_url("nyud_three") == (
        "https://raw.githubusercontent.com/DrSleep/multi-task-refinenet/master/weights/"
        "ExpNYUD_three.ckpt")


def test_cache_is_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert weights.cached_path("kitti") == tmp_path / "hydranet_ros" / "ExpKITTI_joint.ckpt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights.cache_dir() == Path.home() / ".cache" / "hydranet_ros"


def test_preset_download_and_resolve_through_the_cache(server, cache, monkeypatch, tmp_path,
                                                       make_checkpoint):
    """The whole path a user takes, with the preset's published blob id swapped for the test
    file's (the real checkpoints cannot be fetched here)."""
    data = make_checkpoint(6, 2).read_bytes()
    server.files["/ExpKITTI_joint.ckpt"] = data
    monkeypatch.setenv(weights.URL_ENV, server.url)
    kitti = get_preset("kitti")
    fake = type(kitti)(**{**kitti.__dict__,
                          "weights": OfficialWeights("ExpKITTI_joint.ckpt", blob_of(data, tmp_path))})
    monkeypatch.setattr(weights, "get_preset", lambda name: fake)
    assert weights.resolve("kitti", progress=False) == cache / "ExpKITTI_joint.ckpt"
    assert (cache / "ExpKITTI_joint.ckpt").read_bytes() == data
    server.files.clear()  # a second resolve must come from the cache
    assert weights.resolve("kitti", progress=False) == cache / "ExpKITTI_joint.ckpt"
    assert weights.identify(blob_of(data, tmp_path)) == "kitti"


def test_cli_download_failure_leaves_cache_clean(server, cache, monkeypatch, capsys):
    server.files["/ExpNYUD_joint.ckpt"] = b"not the official file"
    monkeypatch.setenv(weights.URL_ENV, server.url)
    from hydranet_ros.cli.common import run_main
    assert run_main(weights_main, ["download", "nyud"], prog="hydranet-weights") == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "failed verification" in err
    assert leftovers(cache) == []


def test_resolve_paths_and_errors(make_checkpoint, tmp_path, cache):
    path = make_checkpoint(6, 2)
    assert weights.resolve(str(path)) == path
    with pytest.raises(weights.WeightsError, match="neither an existing file nor an official preset"):
        weights.resolve(str(tmp_path / "missing.ckpt"))
    with pytest.raises(weights.WeightsError, match="is not a file"):
        weights.resolve(str(tmp_path))


def test_list(cache, capsys):
    assert weights_main(["list"]) == 0
    out = capsys.readouterr().out
    for blob in ("d9386a96f748001406c622100ce944333d1967ff", "56f5f5a6bc08a64f36e83547140add41baa4216d",
                 "6f412c152600827cabff5e1b66efad50090c16a7"):
        assert blob in out
    assert out.count("not downloaded") == 3
