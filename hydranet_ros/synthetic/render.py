"""Ray casting of a procedural street: an RGB image and its exact ground truth.

Every pixel's ray is intersected analytically with the ground plane, the building fronts,
a tree line behind them, tree crowns (spheres) and cars (boxes); the nearest hit wins (a
z-buffer). Small objects are only tested inside their projected bounding box. Ground truth
is geometric, not estimated: depth is the hit's z in the camera's optical frame, normals are
the surfaces' own, classes are the primitives'.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from ..geometry import Intrinsics
from ..presets import get_preset
from .scene import CAMERA_START, CAMERA_STEP, CAMERA_SWAY, Boxes, Spheres, Street, make_street

CLASS_ID = {name: i for i, name in enumerate(get_preset("kitti").class_names)}
SKY, BUILDING, ROAD = CLASS_ID["sky"], CLASS_ID["building"], CLASS_ID["road"]
SIDEWALK, VEGETATION, CAR = CLASS_ID["sidewalk"], CLASS_ID["vegetation"], CLASS_ID["car"]
UP = np.array([0.0, -1.0, 0.0], dtype=np.float32)
WINDOW_GLASS = np.array([0.10, 0.13, 0.17], dtype=np.float32)
TREE_LINE_OFFSET = 10.0
VIEW_RANGE = 80.0  # objects further ahead than this are not tested (a few pixels, hazy)
NEAR = 0.05


@dataclass
class SyntheticFrame:
    rgb: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8 class ids (KITTI-6)
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; NaN for sky
    normals: np.ndarray  # (H, W, 3) float32 unit normals, optical frame; NaN for sky
    intrinsics: Intrinsics


def intrinsics_for(width: int, height: int, hfov_deg: float = 80.0) -> Intrinsics:
    focal = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return Intrinsics(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0, width, height)


# -- textures ------------------------------------------------------------------------------

def _noise_texture(size: int = 256, seed: int = 20190520) -> np.ndarray:
    """A tileable field of smooth random values in [0, 1] (blurred white noise)."""
    field = np.random.default_rng(seed).random((size, size)).astype(np.float32)
    pad = 8  # blur a periodically padded copy so that the texture tiles seamlessly
    field = cv2.GaussianBlur(np.pad(field, pad, mode="wrap"), (0, 0), 1.2)[pad:-pad, pad:-pad]
    return (field - field.min()) / (field.max() - field.min())


_NOISE = _noise_texture()


def value_noise(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smooth pseudo-random values in [0, 1] over the plane (one unit = one texel), the same
    for the same point: a bilinear lookup in a tiling noise texture."""
    count = np.size(x)
    if count == 0:
        return np.zeros(np.shape(x), dtype=np.float32)
    size = _NOISE.shape[0]
    rows = -(-count // size)  # remap wants 2-D maps of under 32767 rows

    def as_map(v: np.ndarray) -> np.ndarray:
        flat = np.zeros(rows * size, dtype=np.float32)
        flat[:count] = np.mod(np.ravel(v), size)
        return flat.reshape(rows, size)
    sampled = cv2.remap(_NOISE, as_map(x), as_map(z), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return sampled.reshape(-1)[:count].reshape(np.shape(x))


def fractal_noise(x: np.ndarray, z: np.ndarray) -> np.ndarray:
    return 0.6 * value_noise(x, z) + 0.4 * value_noise(x * 3.1 + 17.0, z * 3.1 + 5.0)


def _frac(v: np.ndarray) -> np.ndarray:
    return v - np.floor(v)


# -- the camera ----------------------------------------------------------------------------

def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera rotation: yaw about the down axis, pitch about x, roll about z."""
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return (r_yaw @ r_pitch @ r_roll).astype(np.float32)


def camera_pose(street: Street, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(position, world-from-camera rotation) of frame ``index`` driving down ``street``."""
    rng = np.random.default_rng([street.seed, 2, index])
    z = CAMERA_START + index * CAMERA_STEP
    sway = CAMERA_SWAY * np.sin(z / 23.0 + street.seed)
    position = np.array([street.camera_x + sway, -street.camera_height, z], dtype=np.float32)
    yaw = np.radians(4.0 * np.sin(z / 37.0 + street.seed * 1.3) + rng.normal(0, 1.0))
    pitch = np.radians(rng.normal(0, 1.2))
    roll = np.radians(rng.normal(0, 0.8))
    return position, rotation(yaw, pitch, roll)


@lru_cache(maxsize=8)
def _pixel_rays(intr: Intrinsics) -> np.ndarray:
    """(H, W, 3) camera-frame rays (x, y, 1) through pixel centres: a hit at ray parameter t
    lies at depth t along the optical axis."""
    u = (np.arange(intr.width, dtype=np.float32) - intr.cx) / intr.fx
    v = (np.arange(intr.height, dtype=np.float32) - intr.cy) / intr.fy
    rays = np.ones((intr.height, intr.width, 3), dtype=np.float32)
    rays[..., 0] = u[None, :]
    rays[..., 1] = v[:, None]
    return rays


# What a pixel shows, for the shading pass (the label alone does not say which texture).
K_SKY, K_GROUND, K_FACADE, K_TREE_LINE, K_TREE, K_CAR = range(6)


class _Canvas:
    """The z-buffer: per pixel the nearest hit's ray parameter, class, surface kind, object
    index and world normal. Textures are computed afterwards, for visible pixels only."""

    def __init__(self, origin: np.ndarray, rays: np.ndarray) -> None:
        h, w = rays.shape[:2]
        self.origin = origin
        self.rays = rays  # world-frame directions
        with np.errstate(divide="ignore"):
            self.inverse_rays = 1.0 / np.where(np.abs(rays) < 1e-9, np.float32(1e-9), rays)
        self.t = np.full((h, w), np.inf, dtype=np.float32)
        self.labels = np.full((h, w), SKY, dtype=np.uint8)
        self.kind = np.full((h, w), K_SKY, dtype=np.uint8)
        self.obj = np.zeros((h, w), dtype=np.int32)
        self.normals = np.full((h, w, 3), np.nan, dtype=np.float32)

    def commit(self, region: tuple[slice, slice], hit: np.ndarray, t: np.ndarray, label,
               kind: int, obj, normals) -> None:
        """Where ``hit`` and nearer than what is there, show this surface. ``normals`` is a
        vector, a per-pixel array, or a function giving the normals of the pixels won."""
        closer = hit & (t < self.t[region])
        if not closer.any():
            return
        self.t[region][closer] = t[closer]
        if callable(normals):
            self.normals[region][closer] = normals(closer)
        else:
            self.normals[region][closer] = normals[closer] if np.ndim(normals) >= 2 else normals
        for buffer, value in ((self.labels, label), (self.obj, obj)):
            buffer[region][closer] = value[closer] if np.ndim(value) >= 2 else value
        self.kind[region][closer] = kind


FULL = (slice(None), slice(None))


def _plane_hits(canvas: _Canvas, axis: int, value: float, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """(hit, t) of every pixel's ray with the plane coordinate[axis] == value, approached
    from the side where the ray's component along ``axis`` has ``sign``."""
    d = canvas.rays[..., axis]
    hit = sign * d > 1e-6
    t = (value - canvas.origin[axis]) / np.where(hit, d, 1.0)
    return hit, np.where(hit, t, np.inf).astype(np.float32)


def _hit_coordinate(canvas: _Canvas, hit: np.ndarray, t: np.ndarray, axis: int) -> np.ndarray:
    """Coordinate ``axis`` of each ray's point at distance ``t`` where it hit; a missing ray
    (t = inf) gets the camera's own coordinate, which is never used, instead of inf * 0."""
    return canvas.origin[axis] + np.where(hit, t, 0.0) * canvas.rays[..., axis]


def _ground(canvas: _Canvas, street: Street) -> None:
    hit, t = _plane_hits(canvas, 1, 0.0, 1.0)
    lateral = np.abs(_hit_coordinate(canvas, hit, t, 0))
    walk_edge = street.road_half_width + street.sidewalk_width
    labels = np.where(lateral < street.road_half_width, ROAD,
                      np.where(lateral < walk_edge, SIDEWALK, VEGETATION)).astype(np.uint8)
    if street.lawn_width == 0.0:  # no lawn: paving up to the buildings
        labels[labels == VEGETATION] = SIDEWALK
    canvas.commit(FULL, hit, t, labels, K_GROUND, 0, UP)


def _facades(canvas: _Canvas, street: Street, side_index: int) -> None:
    facades = street.facades[side_index]
    side = facades.side
    normal = np.array([-side, 0.0, 0.0], dtype=np.float32)
    hit, t = _plane_hits(canvas, 0, side * facades.x, side)
    z = _hit_coordinate(canvas, hit, t, 2)
    height = -_hit_coordinate(canvas, hit, t, 1)
    segment = np.searchsorted(facades.edges, z, side="right") - 1
    inside = (segment >= 0) & (segment < len(facades.heights))
    top = facades.heights[np.clip(segment, 0, len(facades.heights) - 1)]
    canvas.commit(FULL, hit & inside & (height >= 0) & (height < top), t, BUILDING, K_FACADE,
                  side_index, normal)
    # the tree line further back, seen through gaps between buildings
    hit, t = _plane_hits(canvas, 0, side * (facades.x + TREE_LINE_OFFSET), side)
    height = -_hit_coordinate(canvas, hit, t, 1)
    hit &= (height >= 0) & (height < street.tree_line_height * 1.25) & (t < canvas.t)
    if hit.any():  # the crown's outline is noisy: test only the few candidate pixels
        z = canvas.origin[2] + t[hit] * canvas.rays[..., 2][hit]
        crown = street.tree_line_height * (0.75 + 0.5 * value_noise(z / 4.0, np.full_like(z, 3.0)))
        hit[hit] = height[hit] < crown
        canvas.commit(FULL, hit, t, VEGETATION, K_TREE_LINE, side_index, normal)


def _project_region(corners: np.ndarray, origin: np.ndarray, rot: np.ndarray,
                    canvas: _Canvas, intr: Intrinsics) -> tuple[slice, slice] | None:
    """The pixel box covering world points ``corners``; None when out of view or hidden
    behind what the z-buffer already holds there."""
    cam = (corners - origin) @ rot  # rows: R^T (p - c)
    if (cam[:, 2] <= NEAR).all():
        return None
    if (cam[:, 2] <= NEAR).any():  # straddles the camera plane: test the whole image
        return FULL
    u = cam[:, 0] / cam[:, 2] * intr.fx + intr.cx
    v = cam[:, 1] / cam[:, 2] * intr.fy + intr.cy
    u0, u1 = int(max(np.floor(u.min()), 0)), int(min(np.ceil(u.max()) + 1, intr.width))
    v0, v1 = int(max(np.floor(v.min()), 0)), int(min(np.ceil(v.max()) + 1, intr.height))
    if u0 >= u1 or v0 >= v1:
        return None
    region = slice(v0, v1), slice(u0, u1)
    if canvas.t[region].max() < cam[:, 2].min():  # everything there is nearer already
        return None
    return region


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                     for z in (lo[2], hi[2])], dtype=np.float32)


def _in_range(z_lo: np.ndarray, z_hi: np.ndarray, camera_z: float) -> np.ndarray:
    """Objects worth testing: not behind the camera (with 80 degrees of view, nothing
    beside the street is seen that close), not lost in the haze."""
    return (z_hi > camera_z - 1.0) & (z_lo < camera_z + VIEW_RANGE)


def _cars(canvas: _Canvas, boxes: Boxes, rot: np.ndarray, intr: Intrinsics) -> None:
    c = canvas.origin
    for i in np.flatnonzero(_in_range(boxes.lo[:, 2], boxes.hi[:, 2], c[2])):
        lo, hi = boxes.lo[i], boxes.hi[i]
        region = _project_region(_box_corners(lo, hi), c, rot, canvas, intr)
        if region is None:
            continue
        inverse = canvas.inverse_rays[region]
        t1, t2 = (lo - c) * inverse, (hi - c) * inverse
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        # three-way max/min written out: numpy's reductions over a last axis of 3 are slow
        t_near = np.maximum(np.maximum(near[..., 0], near[..., 1]), near[..., 2])
        t_far = np.minimum(np.minimum(far[..., 0], far[..., 1]), far[..., 2])
        hit = (t_far >= t_near) & (t_near > NEAR)
        if not hit.any():
            continue

        def face_normals(won: np.ndarray, near=near, region=region) -> np.ndarray:
            axis = near[won].argmax(axis=-1)  # the slab entered last is the face hit
            normals = np.zeros((axis.size, 3), dtype=np.float32)
            rays = canvas.rays[region][won]
            normals[np.arange(axis.size), axis] = -np.sign(rays[np.arange(axis.size), axis])
            return normals
        canvas.commit(region, hit, t_near.astype(np.float32), CAR, K_CAR, i, face_normals)


def _trees(canvas: _Canvas, spheres: Spheres, rot: np.ndarray, intr: Intrinsics) -> None:
    c = canvas.origin
    z = spheres.centers[:, 2]
    for i in np.flatnonzero(_in_range(z - spheres.radii, z + spheres.radii, c[2])):
        center, radius = spheres.centers[i], spheres.radii[i]
        region = _project_region(_box_corners(center - radius, center + radius), c, rot, canvas,
                                 intr)
        if region is None:
            continue
        d = canvas.rays[region]
        oc = c - center
        a = np.einsum("...k,...k->...", d, d)
        b = d @ oc
        disc = b * b - a * (oc @ oc - radius * radius)
        hit = disc > 0
        t = np.where(hit, (-b - np.sqrt(np.where(hit, disc, 0.0))) / a, np.inf).astype(np.float32)
        hit &= t > NEAR
        if not hit.any():
            continue
        def sphere_normals(won: np.ndarray, t=t, d=d, center=center) -> np.ndarray:
            normals = (c + t[won][:, None] * d[won] - center).astype(np.float32)
            return normals / np.linalg.norm(normals, axis=-1, keepdims=True)
        canvas.commit(region, hit, t, VEGETATION, K_TREE, i, sphere_normals)


# -- shading: albedo of the visible pixels, one surface kind at a time ----------------------

def _shade_ground(street: Street, p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Asphalt with lane markings, paving tiles, grass."""
    albedo = np.empty(p.shape, dtype=np.float32)
    road, walk, grass = labels == ROAD, labels == SIDEWALK, labels == VEGETATION
    x, z = p[road, 0], p[road, 2]
    lateral = np.abs(x)
    marking = (((lateral < 0.08) & (_frac(z / 9.0) < 0.5))
               | (np.abs(lateral - (street.road_half_width - 0.3)) < 0.07))
    tone = np.where(marking, 0.85, street.asphalt * (0.8 + 0.4 * fractal_noise(x * 3.0, z * 3.0)))
    albedo[road] = tone[:, None]
    x, z = p[walk, 0], p[walk, 2]
    tiles = (_frac(x / 0.6) < 0.06) | (_frac(z / 0.6) < 0.06)
    tone = np.where(tiles, 0.75, 1.0) * (0.9 + 0.2 * value_noise(x * 3.0, z * 3.0))
    albedo[walk] = tone[:, None] * street.sidewalk_tone
    x, z = p[grass, 0], p[grass, 2]
    albedo[grass] = (0.6 + 0.8 * value_noise(x * 1.5 + 40.0, z * 1.5))[:, None] * np.float32([0.16, 0.36, 0.10])
    return albedo


def _shade_facades(street: Street, p: np.ndarray, side_index: np.ndarray) -> np.ndarray:
    albedo = np.empty(p.shape, dtype=np.float32)
    for index, facades in enumerate(street.facades):
        mine = side_index == index
        z, height = p[mine, 2], -p[mine, 1]
        segment = np.clip(np.searchsorted(facades.edges, z, side="right") - 1, 0,
                          len(facades.heights) - 1)
        floor, spacing = facades.floor_height[segment], facades.window_spacing[segment]
        window = ((_frac(height / floor) > 0.3) & (_frac(height / floor) < 0.75)
                  & (np.abs(_frac(z / spacing) - 0.5) < 0.22) & (height > 0.8))
        base = facades.colors[segment] * (0.85 + 0.3 * value_noise(z * 2.0, height * 2.0))[:, None]
        glass = WINDOW_GLASS * (0.7 + 0.8 * value_noise(z * 0.3, height * 0.3))[:, None]
        albedo[mine] = np.where(window[:, None], glass, base)
    return albedo


def _leaves(p: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return 0.55 + 0.9 * fractal_noise(p[:, 0] * 2.5 + p[:, 1] * 1.7, p[:, 2] * 2.5 + offset)


def _shade_cars(boxes: Boxes, obj: np.ndarray, normals: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Paint, glass all round the cabin (painted roof), dark wheels and sills at the bottom."""
    color = boxes.colors[obj]
    roof = np.abs(normals[:, 1]) > 0.5
    glass = boxes.glass[obj] & ~roof
    body = color * (0.85 + 0.3 * value_noise(p[:, 0] * 4.0 + p[:, 1] * 4.0, p[:, 2] * 4.0))[:, None]
    body = np.where((-p[:, 1] < 0.35)[:, None], np.float32(0.06), body)
    return np.where(glass[:, None], WINDOW_GLASS * 1.2, body)


def _sky(street: Street, rays: np.ndarray) -> np.ndarray:
    up = -rays[:, 1] / np.linalg.norm(rays, axis=-1)
    mix = np.clip(up * 2.5, 0.0, 1.0)[:, None]
    sky = street.sky_horizon * (1 - mix) + street.sky_zenith * mix
    lift = np.maximum(up, 0.02)
    clouds = fractal_noise(rays[:, 0] / lift * 0.8 + street.seed, rays[:, 2] / lift * 0.8)
    cover = (np.clip((clouds - 0.55) * 3.0, 0.0, 1.0) * (up > 0))[:, None]
    return sky * (1 - cover) + np.float32(0.95) * cover


def _shade(canvas: _Canvas, street: Street) -> np.ndarray:
    """Linear RGB of every pixel: textured albedo, sun and sky light, haze."""
    kind, obj = canvas.kind, canvas.obj
    sky = kind == K_SKY
    t = np.where(sky, np.float32(0.0), canvas.t)
    points = canvas.origin + t[..., None] * canvas.rays
    albedo = np.zeros(points.shape, dtype=np.float32)
    shaders = {
        K_GROUND: lambda m: _shade_ground(street, points[m], canvas.labels[m]),
        K_FACADE: lambda m: _shade_facades(street, points[m], obj[m]),
        K_TREE_LINE: lambda m: _leaves(points[m], 7.0)[:, None] * np.float32([0.14, 0.32, 0.10]),
        K_TREE: lambda m: _leaves(points[m], obj[m])[:, None] * street.trees.colors[obj[m]],
        K_CAR: lambda m: _shade_cars(street.cars, obj[m], canvas.normals[m], points[m]),
    }
    for surface_kind, shade in shaders.items():
        mine = kind == surface_kind
        if mine.any():
            albedo[mine] = shade(mine)
    lambert = np.clip(np.where(sky[..., None], 0.0, canvas.normals) @ street.sun, 0.0, None)
    light = (street.ambient + (1.0 - street.ambient) * lambert)[..., None] * np.float32([1.0, 0.97, 0.92])
    haze = (1.0 - np.exp(-t / np.float32(street.haze_distance)))[..., None]
    color = albedo * light * (1 - haze) + street.sky_horizon * haze
    color[sky] = _sky(street, canvas.rays[sky])
    return color


def render(street: Street, index: int, intr: Intrinsics,
           pose: tuple[np.ndarray, np.ndarray] | None = None) -> SyntheticFrame:
    """Frame ``index`` of the drive down ``street`` (or seen from ``pose``: position and
    world-from-camera rotation), with its ground truth."""
    origin, rot = pose if pose is not None else camera_pose(street, index)
    canvas = _Canvas(origin, _pixel_rays(intr) @ rot.T)
    _ground(canvas, street)
    for side_index in (0, 1):
        _facades(canvas, street, side_index)
    _trees(canvas, street.trees, rot, intr)
    _cars(canvas, street.cars, rot, intr)
    color = _shade(canvas, street)

    rng = np.random.default_rng([street.seed, 3, index])
    exposure = np.float32(rng.uniform(0.85, 1.15) * 255.0)
    noise = rng.standard_normal(color.shape, dtype=np.float32) * np.float32(3.0)
    rgb = np.clip(color * exposure + noise + 0.5, 0.0, 255.0).astype(np.uint8)
    sky = canvas.kind == K_SKY
    depth = np.where(sky, np.float32(np.nan), canvas.t).astype(np.float32)
    normals = (canvas.normals @ rot).astype(np.float32)  # R^T n per pixel: camera frame
    return SyntheticFrame(rgb, canvas.labels, depth, normals, intr)


class SyntheticWorld:
    """Frames of synthetic streets at one resolution: ``frame(seed, index)``."""

    def __init__(self, width: int = 320, height: int = 240, hfov_deg: float = 80.0) -> None:
        self.intrinsics = intrinsics_for(width, height, hfov_deg)

    def frame(self, seed: int, index: int) -> SyntheticFrame:
        return render(make_street(seed), index, self.intrinsics)
