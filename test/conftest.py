"""Shared fixtures: seeded checkpoints made by the tests, and the release's reference data."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from hydranet_ros.checkpoint import save_checkpoint
from hydranet_ros.model import HydraNet
from isolation import claim_domain
from signal_stack import dangling_signal_stack

REPO = Path(__file__).resolve().parents[1]

# ROS 2 tests talk over DDS: keep them on this host, in a domain no other test run (and no
# robot on the default domain 0) uses; nodes the tests start inherit it.
os.environ["ROS_DOMAIN_ID"] = str(claim_domain())
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
# Engine exports and downloads never go into the user's cache (each test gets its own below).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="hydranet_tests_cache_")
REFERENCE_SUBDIR = Path("reference") / "multi-task-refinenet"
#: Set by .ci/run: everything CI installs must work there, so a missing or broken piece
#: (rclpy, message packages, a backend, the reference data) fails instead of skipping.
STRICT_ENV = "HYDRANET_TESTS_STRICT"
STRICT = os.environ.get(STRICT_ENV) == "1"


def require(reason: str) -> None:
    """Skip with ``reason`` where a user lacks an optional piece; fail where it is required
    (``HYDRANET_TESTS_STRICT=1``, as in CI)."""
    if STRICT:
        pytest.fail(f"required ({STRICT_ENV}=1): {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def import_or_skip(module: str, reason: str):
    """The module, or a skip (a failure when strict) saying why it is needed and what broke."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        require(f"{reason} ({type(exc).__name__}: {exc})")


def find_reference() -> Path | None:
    """``../shared/reference/multi-task-refinenet`` next to the checkout (or $HYDRANET_SHARED)."""
    candidates = [Path(os.environ["HYDRANET_SHARED"])] if "HYDRANET_SHARED" in os.environ else []
    candidates += [parent / "shared" for parent in REPO.parents]
    for shared in candidates:
        if (shared / REFERENCE_SUBDIR).is_dir():
            return shared / REFERENCE_SUBDIR
    return None


@pytest.fixture(autouse=True)
def signals_still_work():
    """After each test: the thread's alternate signal stack is still in mapped memory."""
    yield
    broken = dangling_signal_stack()
    assert broken is None, f"the alternate signal stack was left in freed memory: {broken}"


@pytest.fixture(autouse=True)
def own_cache(tmp_path_factory, monkeypatch) -> Path:
    """A cache of the test's own: an export or download one test made is never what makes
    another pass. (Module-wide fixtures, such as a node started for a whole module, keep the
    cache of the test that started them.)"""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


@pytest.fixture
def spare_domain() -> str:
    """A second ROS domain of this run's own, for a test whose nodes must not meet the rest."""
    return str(claim_domain())


@pytest.fixture(scope="session")
def reference() -> Path:
    path = find_reference()
    if path is None:
        require("the release's reference data (../shared/reference/multi-task-refinenet) "
                    "is not next to this checkout; set HYDRANET_SHARED to its shared/ folder")
    return path


def randomize(model: HydraNet, seed: int) -> HydraNet:
    """Weights with realistic magnitudes (the release's N(0, 0.01) init makes outputs ~0,
    which would let almost any comparison pass)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
            elif tensor.dim() == 1:  # BN scale
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def guard_model(num_classes: int, num_tasks: int, seed: int = 0) -> HydraNet:
    """A model whose every layer matters, for the engine guards: the trunk and the heads of
    the bundled trained weights, He-initialised heads where the shape differs (40 classes).

    Activations keep trained magnitudes through every layer, so zeroing any module changes
    the outputs measurably (test_engines checks it); the release's N(0, 0.01) initialisation
    shrinks them to ~1e-10 after layer3, where only the shallow path decides the outputs.
    """
    from hydranet_ros.checkpoint import read_state_dict
    from hydranet_ros.weights import resolve
    trained = read_state_dict(resolve("synthetic"))
    model = HydraNet(num_classes, num_tasks)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name in trained and trained[name].shape == tensor.shape:
                tensor.copy_(trained[name].float())
            elif name.endswith("bias"):
                tensor.zero_()
            else:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
    return model.eval()


def make_model(num_classes: int, num_tasks: int, seed: int = 0) -> HydraNet:
    return randomize(HydraNet(num_classes, num_tasks), seed)


@pytest.fixture
def make_checkpoint(tmp_path: Path):
    """Factory: (num_classes, num_tasks, seed) -> path of a seeded checkpoint file."""
    def factory(num_classes: int = 6, num_tasks: int = 2, seed: int = 0,
                name: str | None = None) -> Path:
        path = tmp_path / (name or f"hydranet_{num_classes}c_{num_tasks}t_{seed}.ckpt")
        save_checkpoint(make_model(num_classes, num_tasks, seed), path)
        return path
    return factory


@pytest.fixture(scope="session")
def ros():
    """An initialised rclpy context for the test process."""
    rclpy = import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")
    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


def source_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return [f for f in listed if (REPO / f).is_file()]


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> Path:
    if shutil.which("colcon", path=str(Path(sys.executable).parent)) is None:
        require("colcon is not installed (pip install colcon-core colcon-ros "
                    "colcon-python-setup-py ros-ament-package)")
    ws = tmp_path_factory.mktemp("ws")
    src = ws / "src" / "hydranet_ros"
    for name in source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    colcon = str(Path(sys.executable).with_name("colcon"))
    result = subprocess.run([colcon, "build", "--base-paths", "src"], cwd=ws, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return ws / "install" / "hydranet_ros"
