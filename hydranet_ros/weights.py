"""Where weights come from: the official checkpoints, downloaded once into a user cache.

The release keeps its checkpoints as plain git blobs, so the git blob id (sha1 over
``b"blob <size>\\0" + bytes``) is the published fingerprint every download is checked against.
A file only ever appears in the cache under its final name after it passed that check.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from .errors import HydraNetError
from .presets import Preset, get_preset, official_weights_url, preset_names

CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 30
#: Overrides the download location, e.g. a mirror inside a robot fleet's network.
URL_ENV = "HYDRANET_WEIGHTS_URL"


class WeightsError(HydraNetError):
    pass


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hydranet_ros`` (``~/.cache/hydranet_ros`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hydranet_ros"


def _blob_hasher(size: int) -> "hashlib._Hash":
    hasher = hashlib.sha1()
    hasher.update(b"blob %d\0" % size)
    return hasher


def git_blob_id(path: str | os.PathLike) -> str:
    """The id ``git hash-object`` gives the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        hasher = _blob_hasher(size)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                hasher.update(chunk)
    except OSError as exc:
        raise WeightsError(f"cannot read {path}: {exc.strerror or exc}") from None
    return hasher.hexdigest()


def official_preset(name: str) -> Preset:
    preset = get_preset(name)
    if preset.weights is None:
        raise WeightsError(f"preset '{name}' has no official weights to download")
    return preset


def cached_path(name: str) -> Path:
    return cache_dir() / official_preset(name).weights.file


def download_url(name: str) -> str:
    file = official_preset(name).weights.file
    base = os.environ.get(URL_ENV)
    return f"{base.rstrip('/')}/{file}" if base else official_weights_url(file)


def _copy_with_progress(response: BinaryIO, out: BinaryIO, total: int | None, label: str,
                        hasher: "hashlib._Hash | None", progress: bool) -> int:
    written = 0
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not progress,
              leave=False) as bar:
        for chunk in iter(lambda: response.read(CHUNK), b""):
            out.write(chunk)
            if hasher is not None:
                hasher.update(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    return written


def download_file(url: str, dest: Path, git_blob: str, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest``; the file appears only if its git blob id is ``git_blob``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part{os.getpid()}")
    try:
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, \
                    open(tmp, "wb") as out:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                # The blob header needs the size up front; without it, hash after the copy.
                hasher = _blob_hasher(total) if total is not None else None
                written = _copy_with_progress(response, out, total, dest.name, hasher, progress)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WeightsError(f"cannot download {url}: {reason} (offline? set {URL_ENV} to "
                               "a reachable mirror or pass a local file)") from None
        if total is not None and written != total:
            raise WeightsError(f"download of {url} stopped after {written} of {total} bytes")
        actual = hasher.hexdigest() if hasher is not None else git_blob_id(tmp)
        if actual != git_blob:
            raise WeightsError(f"download of {url} failed verification: git blob id {actual}, "
                               f"expected {git_blob}; nothing was kept")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download(name: str, force: bool = False, progress: bool = True) -> Path:
    """The official checkpoint of preset ``name`` in the cache, downloading it if needed."""
    preset = official_preset(name)
    dest = cached_path(name)
    if dest.exists() and not force:
        return dest
    return download_file(download_url(name), dest, preset.weights.git_blob, progress)


def resolve(spec: str, progress: bool = True) -> Path:
    """A weights argument (a file path or an official preset's name) as a local file."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if spec in preset_names():
        bundled = get_preset(spec).bundled_weights
        return bundled_path(spec, bundled) if bundled else download(spec, progress=progress)
    if path.exists():
        raise WeightsError(f"weights '{spec}' is not a file")
    raise WeightsError(f"weights '{spec}' is neither an existing file nor an official preset "
                       f"({', '.join(preset_names())})")


def bundled_path(name: str, relative: str) -> Path:
    path = Path(str(resources.files(__package__).joinpath(relative)))
    if not path.is_file():
        raise WeightsError(f"the bundled weights of preset '{name}' are missing from the "
                           f"installation ({path})")
    return path


def identify(blob_id: str) -> str | None:
    """The preset whose official checkpoint has this git blob id, if any."""
    for name in preset_names():
        weights = get_preset(name).weights
        if weights is not None and weights.git_blob == blob_id:
            return name
    return None
