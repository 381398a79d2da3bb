"""Point-cloud geometry against independent computations on known scenes."""

from __future__ import annotations

import numpy as np
import pytest

from hydranet_ros.errors import HydraNetError
from hydranet_ros.geometry import Intrinsics, backproject, pack_rgb, point_cloud

INTR = Intrinsics(fx=300.0, fy=280.0, cx=159.5, cy=119.5, width=320, height=240)


def fronto_parallel_plane(distance: float) -> np.ndarray:
    return np.full((INTR.height, INTR.width), distance, dtype=np.float32)


def ground_plane(camera_height: float) -> np.ndarray:
    """Depth of a flat floor ``camera_height`` below a level camera: z = h fy / (v - cy)."""
    v = np.arange(INTR.height, dtype=np.float64)[:, None] - INTR.cy
    with np.errstate(divide="ignore"):
        z = np.where(v > 0, camera_height * INTR.fy / v, np.nan)
    return np.broadcast_to(z, (INTR.height, INTR.width)).astype(np.float32)


def test_plane_at_known_distance_comes_back_as_that_plane():
    depth = fronto_parallel_plane(4.0)
    colors = np.zeros((INTR.height, INTR.width, 3), np.uint8)
    labels = np.zeros((INTR.height, INTR.width), np.uint8)
    cloud = point_cloud(depth, INTR, colors, labels)
    assert cloud.shape == (240, 320)
    assert np.allclose(cloud["z"], 4.0)
    # the corners of the image are where the pinhole model says they are
    assert cloud["x"][0, 0] == pytest.approx(-159.5 * 4.0 / 300.0)
    assert cloud["y"][0, 0] == pytest.approx(-119.5 * 4.0 / 280.0)
    assert cloud["x"][-1, -1] == pytest.approx((319 - 159.5) * 4.0 / 300.0)
    # a plane fit through the points: normal (0, 0, 1), offset 4
    pts = np.stack([cloud["x"].ravel(), cloud["y"].ravel(), cloud["z"].ravel()], axis=1)
    centred = pts - pts.mean(axis=0)
    normal = np.linalg.svd(centred, full_matrices=False)[2][-1]
    assert abs(abs(normal[2]) - 1.0) < 1e-6
    assert abs(pts @ normal).std() < 1e-5


def test_ground_plane_is_flat_at_camera_height():
    depth = ground_plane(1.65)
    cloud = point_cloud(depth, INTR, np.zeros(depth.shape + (3,), np.uint8),
                        np.zeros(depth.shape, np.uint8))
    valid = np.isfinite(cloud["z"])
    assert valid[:120].sum() == 0 and valid[121:].all()  # horizon and above: no floor
    assert np.allclose(cloud["y"][valid], 1.65, atol=1e-5)  # y points down in the optical frame


def test_backproject_matches_inverse_projection():
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.5, 50.0, (INTR.height, INTR.width)).astype(np.float32)
    xyz = backproject(depth, INTR)
    u = xyz[..., 0] / xyz[..., 2] * INTR.fx + INTR.cx
    v = xyz[..., 1] / xyz[..., 2] * INTR.fy + INTR.cy
    cols, rows = np.meshgrid(np.arange(INTR.width), np.arange(INTR.height))
    assert np.allclose(u, cols, atol=1e-3) and np.allclose(v, rows, atol=1e-3)


def test_invalid_points_stride_exclusion_and_unorganized():
    depth = fronto_parallel_plane(10.0)
    depth[:, :10] = np.nan
    depth[:, 10:20] = 0.0
    depth[:, 20:30] = 90.0
    labels = np.zeros(depth.shape, np.uint8)
    labels[:, 300:] = 5
    colors = np.zeros(depth.shape + (3,), np.uint8)
    colors[..., 0] = 255
    cloud = point_cloud(depth, INTR, colors, labels, stride=2, max_depth=80.0,
                        excluded=np.array([5]))
    assert cloud.shape == (120, 160)
    valid = np.isfinite(cloud["z"])
    assert not valid[:, :15].any() and not valid[:, 150:].any() and valid[:, 15:150].all()
    assert np.isnan(cloud["x"][~valid]).all() and np.isnan(cloud["y"][~valid]).all()
    flat = point_cloud(depth, INTR, colors, labels, stride=2, max_depth=80.0,
                       excluded=np.array([5]), organized=False)
    assert flat.shape == (1, valid.sum()) and np.isfinite(flat["z"]).all()
    assert (flat["rgb"].view(np.uint32) == 0xFF0000).all()


def test_pack_rgb_is_pcl_layout():
    packed = pack_rgb(np.array([[1, 2, 3], [255, 128, 0]], dtype=np.uint8))
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0x010203, 0xFF8000]
    image = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    view = image[::2, ::3]  # as the cloud's stride takes it: not contiguous
    r, g, b = (view[..., k].astype(np.uint32) for k in range(3))
    assert pack_rgb(view).shape == (3, 4)
    assert np.array_equal(pack_rgb(view).view(np.uint32), (r << 16) | (g << 8) | b)


def test_size_mismatch_and_bad_intrinsics():
    with pytest.raises(HydraNetError, match="depth image is 10x5 but the camera info is for 320x240"):
        point_cloud(np.ones((5, 10), np.float32), INTR, np.zeros((5, 10, 3), np.uint8),
                    np.zeros((5, 10), np.uint8))
    with pytest.raises(HydraNetError, match="camera matrix K has unusable focal lengths"):
        Intrinsics.checked(0, 1, 1, 1, 4, 4)
    with pytest.raises(HydraNetError, match="projection matrix P has unusable focal lengths"):
        Intrinsics.checked(1, 1e-300, 1, 1, 4, 4, "projection matrix P")  # 0 as float32
    with pytest.raises(HydraNetError, match="unusable focal lengths"):
        Intrinsics.checked(1, 1, float("nan"), 1, 4, 4)
    with pytest.raises(HydraNetError, match="empty image size 0x4"):
        Intrinsics.checked(1, 1, 1, 1, 0, 4)


@pytest.mark.parametrize("organized", [True, False])
def test_every_byte_of_a_cloud_is_defined(organized):
    """The 2 bytes after each label are zero, so equal inputs give equal messages (a
    structured copy of the valid points once left them as whatever memory held)."""
    rng = np.random.default_rng(1)
    depth = rng.uniform(-1, 30, (24, 32)).astype(np.float32)
    intr = Intrinsics(20.0, 20.0, 16.0, 12.0, 32, 24)
    colors = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 6, (24, 32)).astype(np.uint8)
    for _ in range(3):
        np.full(1 << 16, 0xA7, np.uint8)  # dirty the allocator's free memory
        cloud = point_cloud(depth, intr, colors, labels, max_depth=20.0, organized=organized)
        raw = np.frombuffer(cloud.tobytes(), np.uint8).reshape(-1, 20)
        assert (raw[:, 18:] == 0).all()
