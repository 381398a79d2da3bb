"""Held-out evaluation on the synthetic world, through exactly the node's post-processing.

Held-out frame k is frame (k % 25) * 4 of street HELD_OUT_SEED_START + k // 25: streets whose
seeds training never draws (see synthetic.scene.TRAIN_SEEDS).
"""

from __future__ import annotations

import numpy as np

from .engines import Engine
from .metrics import DEFAULT_MAX_DEPTH_M, RunningMetrics
from .outputs import OutputSettings, compute_outputs
from .predictor import Predictor
from .presets import Preset
from .synthetic.render import SyntheticFrame, SyntheticWorld
from .synthetic.scene import HELD_OUT_SEED_START

FRAMES_PER_HELD_OUT_STREET = 25
HELD_OUT_FRAME_SPACING = 4
EVALUATED = {"labels", "depth", "normals"}


def held_out_frame(world: SyntheticWorld, k: int) -> SyntheticFrame:
    return world.frame(HELD_OUT_SEED_START + k // FRAMES_PER_HELD_OUT_STREET,
                       (k % FRAMES_PER_HELD_OUT_STREET) * HELD_OUT_FRAME_SPACING)


def max_depth_of(preset: Preset) -> float:
    """How far depth is scored: the preset's range. A custom checkpoint's (generic) preset
    has none, and no --preset can give it one (its class count matches no official preset),
    so its depth is scored up to the metrics' and the training's default cap."""
    return preset.depth_range[1] if preset.depth_range is not None else DEFAULT_MAX_DEPTH_M


def new_metrics(preset: Preset) -> RunningMetrics:
    """Empty metrics for ``preset``'s classes, depth scored up to ``max_depth_of(preset)``."""
    return RunningMetrics(preset.class_names, max_depth_of(preset))


def update_metrics(metrics: RunningMetrics, outputs: dict, frame: SyntheticFrame) -> None:
    metrics.update(outputs.get("labels"), frame.labels, outputs.get("depth"), frame.depth,
                   outputs.get("normals"), frame.normals)


def evaluate_held_out(predictor: Predictor, count: int, width: int = 320,
                      height: int = 240) -> dict:
    """Metrics of a predictor on the first ``count`` held-out frames."""
    preset = predictor.preset
    world = SyntheticWorld(width, height)
    metrics = new_metrics(preset)
    settings = OutputSettings()
    for k in range(count):
        frame = held_out_frame(world, k)
        pred = predictor.predict(frame.rgb)
        update_metrics(metrics, compute_outputs(frame.rgb, pred, preset, settings, EVALUATED),
                       frame)
    return metrics.summary()


def compare_engines(engines: dict[str, Engine], preset: Preset, frames: list[SyntheticFrame],
                    baseline: str) -> dict[str, dict]:
    """Each engine's metrics on ``frames`` (with ground truth), and how far its labels, depth
    and normals are from the ``baseline`` engine's: what a cheaper precision costs."""
    settings = OutputSettings()
    results: dict[str, dict] = {}
    predictions: dict[str, list] = {}
    for name, engine in engines.items():
        metrics = new_metrics(preset)
        predictions[name] = []
        for frame in frames:
            pred = engine.predict([frame.rgb], frame.rgb.shape[:2], frozenset(EVALUATED))[0]
            predictions[name].append(pred)
            update_metrics(metrics, compute_outputs(frame.rgb, pred, preset, settings,
                                                    EVALUATED), frame)
        results[name] = metrics.summary()
    for name, preds in predictions.items():
        base = predictions[baseline]
        agree = np.mean([(p.labels == b.labels).mean() for p, b in zip(preds, base)])
        results[name]["labels_agree_with_baseline"] = float(agree)
    return results


def evaluate_folder(predictor: Predictor, root: str, depth_scale: float) -> dict:
    """Metrics of a predictor on a folder in the training data layout (at full resolution)."""
    from tqdm import tqdm

    from .training.data import FolderDataset
    preset = predictor.preset
    data = FolderDataset(root, preset, None, depth_scale, seed=0)
    metrics = new_metrics(preset)
    for index in tqdm(range(len(data)), unit="img", desc="evaluating", disable=len(data) < 2):
        rgb, labels, depth, normals = data.load(index)
        out = compute_outputs(rgb, predictor.predict(rgb), preset, OutputSettings(), EVALUATED)
        metrics.update(out.get("labels"), labels, out.get("depth"), depth, out.get("normals"),
                       normals)
    return metrics.summary()
