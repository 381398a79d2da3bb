"""Procedural streets: everything about one street follows from its seed.

World frame: X to the right of the street, Y down (ground at Y = 0, heights are -Y), Z along
the street. That is the camera's optical frame when the camera looks straight down the street,
so a level camera's ground truth needs no rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Streets drawn by training; held-out evaluation streets start far above them.
TRAIN_SEEDS = range(0, 100_000)
HELD_OUT_SEED_START = 1_000_000
STREET_LENGTH = 420.0  # metres of street generated per seed
CAMERA_START = 10.0
PARKED_CAR_INSET = 1.1  # parked cars' centre line, from the road's edge
CAMERA_SWAY = 0.15  # metres either side of the lane's centre
CAMERA_STEP = 1.5  # metres travelled per frame

BUILDING_PALETTE = np.array([
    [0.55, 0.27, 0.20], [0.72, 0.62, 0.48], [0.60, 0.60, 0.62], [0.82, 0.80, 0.74],
    [0.45, 0.40, 0.38], [0.70, 0.50, 0.35], [0.52, 0.56, 0.62], [0.78, 0.70, 0.58],
], dtype=np.float32)
CAR_PALETTE = np.array([
    [0.75, 0.08, 0.08], [0.10, 0.20, 0.60], [0.85, 0.85, 0.85], [0.08, 0.08, 0.09],
    [0.45, 0.47, 0.50], [0.10, 0.45, 0.20], [0.85, 0.70, 0.10], [0.55, 0.30, 0.10],
], dtype=np.float32)


@dataclass(frozen=True)
class Facades:
    """Building fronts along one side: segment i spans z in [edges[i], edges[i+1]]."""
    side: int  # -1 left, +1 right
    x: float  # distance of the facade plane from the street's centre line
    edges: np.ndarray
    heights: np.ndarray  # 0 for a gap between buildings
    colors: np.ndarray  # (segments, 3)
    floor_height: np.ndarray
    window_spacing: np.ndarray


@dataclass(frozen=True)
class Boxes:
    """Axis-aligned boxes (car bodies and cabins): lo/hi corners, colour, glass flag."""
    lo: np.ndarray  # (n, 3)
    hi: np.ndarray  # (n, 3)
    colors: np.ndarray  # (n, 3)
    glass: np.ndarray  # (n,) bool: cabin (windows) rather than body


@dataclass(frozen=True)
class Spheres:
    """Tree crowns."""
    centers: np.ndarray  # (n, 3)
    radii: np.ndarray  # (n,)
    colors: np.ndarray  # (n, 3)


@dataclass(frozen=True)
class Street:
    seed: int
    road_half_width: float
    sidewalk_width: float
    lawn_width: float  # vegetation strip between sidewalk and buildings (0: none)
    facades: tuple[Facades, Facades]
    tree_line_height: float  # hedge/tree wall behind the buildings, seen through gaps
    cars: Boxes
    trees: Spheres
    sun: np.ndarray  # unit vector towards the sun (world)
    ambient: float
    asphalt: float
    sidewalk_tone: np.ndarray
    sky_horizon: np.ndarray
    sky_zenith: np.ndarray
    haze_distance: float
    camera_height: float
    camera_x: float


def _facades(rng: np.random.Generator, side: int, x: float) -> Facades:
    edges = [0.0]
    heights = []
    while edges[-1] < STREET_LENGTH:
        if rng.random() < 0.25:
            length, height = rng.uniform(3.0, 10.0), 0.0  # a gap
        else:
            length, height = rng.uniform(8.0, 30.0), rng.uniform(6.0, 24.0)
        edges.append(edges[-1] + length)
        heights.append(height)
    count = len(heights)
    return Facades(
        side=side, x=x, edges=np.array(edges, dtype=np.float64),
        heights=np.array(heights, dtype=np.float32),
        colors=BUILDING_PALETTE[rng.integers(0, len(BUILDING_PALETTE), count)]
        * rng.uniform(0.85, 1.15, (count, 1)).astype(np.float32),
        floor_height=rng.uniform(2.8, 3.6, count).astype(np.float32),
        window_spacing=rng.uniform(2.0, 3.5, count).astype(np.float32),
    )


def _cars(rng: np.random.Generator, road_half: float) -> Boxes:
    lo, hi, colors, glass = [], [], [], []

    def add_car(x_center: float, z_start: float) -> None:
        length, width = rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9)
        body_h, cabin_h = rng.uniform(0.75, 0.95), rng.uniform(0.55, 0.7)
        color = CAR_PALETTE[rng.integers(0, len(CAR_PALETTE))]
        x0, x1 = x_center - width / 2, x_center + width / 2
        lo.append([x0, -(0.2 + body_h), z_start])
        hi.append([x1, 0.0, z_start + length])
        colors.append(color)
        glass.append(False)
        inset = rng.uniform(0.7, 1.1)
        lo.append([x0 + 0.1, -(0.25 + body_h + cabin_h), z_start + inset])
        hi.append([x1 - 0.1, -(0.25 + body_h), z_start + length - inset * 0.8])
        colors.append(color)
        glass.append(True)

    for side in (-1, 1):
        z = rng.uniform(5.0, 20.0)
        while z < STREET_LENGTH:
            if rng.random() < 0.55:
                add_car(side * (road_half - PARKED_CAR_INSET), z)
            z += rng.uniform(5.5, 14.0)
    z = rng.uniform(25.0, 60.0)
    while z < STREET_LENGTH:  # traffic in the opposite lane
        add_car(-road_half / 2, z)
        z += rng.uniform(25.0, 70.0)
    return Boxes(np.array(lo, np.float32).reshape(-1, 3), np.array(hi, np.float32).reshape(-1, 3),
                 np.array(colors, np.float32).reshape(-1, 3), np.array(glass, bool))


def _trees(rng: np.random.Generator, road_half: float, sidewalk: float, lawn: float) -> Spheres:
    centers, radii = [], []
    for side in (-1, 1):
        x = side * (road_half + sidewalk + (lawn / 2 if lawn > 1.5 else -0.6))
        z = rng.uniform(0.0, 10.0)
        while z < STREET_LENGTH:
            if rng.random() < 0.6:
                radius = rng.uniform(1.2, 2.6)
                centers.append([x + rng.uniform(-0.3, 0.3), -(rng.uniform(2.2, 3.5) + radius), z])
                radii.append(radius)
            z += rng.uniform(7.0, 16.0)
    count = len(radii)
    greens = np.stack([rng.uniform(0.12, 0.3, count), rng.uniform(0.35, 0.6, count),
                       rng.uniform(0.08, 0.2, count)], axis=1)
    return Spheres(np.array(centers, np.float32).reshape(-1, 3), np.array(radii, np.float32),
                   greens.astype(np.float32))


@lru_cache(maxsize=64)
def make_street(seed: int) -> Street:
    rng = np.random.default_rng([seed, 1])
    road_half = float(rng.uniform(4.0, 6.0))
    sidewalk = float(rng.uniform(1.8, 4.0))
    lawn = float(rng.choice([0.0, rng.uniform(1.5, 4.0)]))
    facade_x = road_half + sidewalk + lawn + float(rng.uniform(0.0, 1.0))
    elevation = rng.uniform(0.35, 1.1)
    azimuth = rng.uniform(0, 2 * np.pi)
    sun = np.array([np.cos(elevation) * np.cos(azimuth), -np.sin(elevation),
                    np.cos(elevation) * np.sin(azimuth)], dtype=np.float32)
    return Street(
        seed=seed, road_half_width=road_half, sidewalk_width=sidewalk, lawn_width=lawn,
        facades=(_facades(rng, -1, facade_x), _facades(rng, 1, facade_x + float(rng.uniform(0, 2)))),
        tree_line_height=float(rng.uniform(6.0, 12.0)),
        cars=_cars(rng, road_half), trees=_trees(rng, road_half, sidewalk, lawn),
        sun=sun, ambient=float(rng.uniform(0.35, 0.55)), asphalt=float(rng.uniform(0.22, 0.38)),
        sidewalk_tone=rng.uniform(0.55, 0.75, 3).astype(np.float32) * np.float32([1.0, 0.97, 0.92]),
        sky_horizon=np.float32([0.85, 0.88, 0.92]) * np.float32(rng.uniform(0.9, 1.05)),
        sky_zenith=np.float32([0.30, 0.50, 0.85]) * np.float32(rng.uniform(0.8, 1.1)),
        haze_distance=float(rng.uniform(150.0, 400.0)),
        camera_height=float(rng.uniform(1.45, 1.75)),
        # the middle of the lane between the centre line and the parked cars
        camera_x=float((road_half - PARKED_CAR_INSET - 1.0) / 2 + rng.uniform(-0.2, 0.2)),
    )


def frames_per_street() -> int:
    return int((STREET_LENGTH - CAMERA_START - 100.0) / CAMERA_STEP)
