"""The node's outputs made with torch on the engine's device: colour views, overlay, depth
colour map, normals colours and the semantic point cloud, for CUDA engines, so that only the
finished bytes cross to the host, in one transfer.

Each function mirrors its host version (``visualize.py``, ``outputs.py``, ``geometry.py``)
operation for operation in float32, so the results are the same bytes; the tests run this
code on the CPU and compare it with the host path. The host path stays what CPU engines use.
"""

from __future__ import annotations

import numpy as np
import torch

from .geometry import POINT_DTYPE, Intrinsics
from .outputs import OutputSettings, class_ids, effective_max_depth
from .postprocess import Prediction
from .presets import Preset
from .visualize import PLASMA_RGB, label_palette


def label_colors(labels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """(H, W) ids -> (H, W, 3) uint8 through the 256-entry palette (ids past the classes get
    the ignore colour, as ``visualize.label_palette``)."""
    return palette[labels.long().clamp_(0, palette.shape[0] - 1)]


def overlay(rgb: torch.Tensor, colors: torch.Tensor, alpha: float) -> torch.Tensor:
    """OpenCV's addWeighted(rgb, 1 - alpha, colors, alpha, 0) on uint8: float32 weights,
    rounded half to even, saturated."""
    blended = rgb.float() * np.float32(1.0 - alpha) + colors.float() * np.float32(alpha)
    return blended.round_().clamp_(0, 255).to(torch.uint8)


def metric_depth(depth: torch.Tensor, max_depth: float) -> torch.Tensor:
    """REP 118 depth: NaN where not positive, not finite or beyond ``max_depth``."""
    valid = torch.isfinite(depth) & (depth > 0) & (depth <= max_depth)
    return torch.where(valid, depth, torch.full_like(depth, float("nan")))


def depth_colors(depth: torch.Tensor, value_range: tuple[float, float],
                 plasma: torch.Tensor) -> torch.Tensor:
    """The plasma map over ``value_range`` (OpenCV's convertScaleAbs, then the table); black
    where the depth is not finite."""
    low, high = value_range
    scale = np.float32(255.0 / (high - low))
    shifted = torch.fmax(depth, torch.tensor(np.float32(low), device=depth.device))
    index = (shifted * scale + np.float32(-low * scale)).abs_().round_().clamp_(0, 255)
    colored = plasma[index.to(torch.long)]
    return colored * torch.isfinite(depth).unsqueeze(-1).to(torch.uint8)


def normals_colors(normals: torch.Tensor) -> torch.Tensor:
    """R = (x+1)/2, G = (y+1)/2, B = (1-z)/2, truncated, as ``visualize.colorize_normals``."""
    flip = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float32, device=normals.device)
    return (((normals * flip + 1.0) / 2.0) * 255.0).to(torch.uint8)


def pack_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) uint8 -> (...) float32 holding 0x00RRGGBB (PCL's packed colour)."""
    wide = rgb.to(torch.int32)
    return (wide[..., 0] << 16 | wide[..., 1] << 8 | wide[..., 2]).view(torch.float32)


def point_cloud(depth: torch.Tensor, intr: Intrinsics, colors: torch.Tensor,
                labels: torch.Tensor, stride: int = 1, max_depth: float = float("inf"),
                excluded: np.ndarray | None = None, organized: bool = True) -> torch.Tensor:
    """(rows, cols, 5) float32 laid out as POINT_DTYPE (x, y, z, rgb, label + 2 zero bytes),
    or (1, N, 5) of the valid points; the same bytes as ``geometry.point_cloud``."""
    z = depth[::stride, ::stride]
    sub_labels = labels[::stride, ::stride]
    valid = (z > 0) & (z <= max_depth)
    if excluded is not None and excluded.size:
        valid &= ~torch.isin(sub_labels.long(), torch.as_tensor(excluded, device=z.device))
    z = torch.where(valid, z, torch.full_like(z, float("nan")))
    f32 = dict(dtype=torch.float32, device=z.device)
    cols = torch.arange(z.shape[1], **f32) * stride
    rows = torch.arange(z.shape[0], **f32) * stride
    x = ((cols - np.float32(intr.cx)) / np.float32(intr.fx))[None, :] * z
    y = ((rows - np.float32(intr.cy)) / np.float32(intr.fy))[:, None] * z
    cloud = torch.stack([x, y, z, pack_rgb(colors[::stride, ::stride]),
                         sub_labels.to(torch.int32).view(torch.float32)], dim=-1)
    return cloud if organized else cloud[valid][None]


class DeviceOutputs:
    """The tables of one preset on one device, and the outputs of a frame made there."""

    def __init__(self, preset: Preset, device: torch.device) -> None:
        self.preset = preset
        self.device = device
        size = 256 if preset.num_classes <= 256 else 65536
        self.palette = torch.from_numpy(label_palette(preset, size)).to(device)
        self.plasma = torch.from_numpy(np.ascontiguousarray(PLASMA_RGB[:, 0])).to(device)

    def compute(self, rgb: torch.Tensor, labels: torch.Tensor | None, depth: torch.Tensor | None,
                normals: torch.Tensor | None, confidence: torch.Tensor | None,
                settings: OutputSettings, wanted: set[str],
                intrinsics: Intrinsics | None = None) -> dict[str, torch.Tensor]:
        """The wanted outputs, as ``outputs.compute_outputs`` makes them, on the device."""
        from .visualize import depth_range
        max_depth = effective_max_depth(self.preset, settings)
        metric = metric_depth(depth, max_depth) if depth is not None else None
        colors = None
        if wanted & {"segmentation_color", "overlay"} or (
                "points" in wanted and settings.pointcloud_color == "segmentation"):
            colors = label_colors(labels, self.palette)
        out: dict[str, torch.Tensor] = {}
        if "labels" in wanted:
            out["labels"] = labels
        if "confidence" in wanted and confidence is not None:
            out["confidence"] = confidence
        if "segmentation_color" in wanted:
            out["segmentation_color"] = colors
        if "depth" in wanted:
            out["depth"] = metric
        if normals is not None and "normals" in wanted:
            out["normals"] = normals
        if "points" in wanted and intrinsics is not None:
            cloud_max = settings.pointcloud_max_depth or max_depth
            source = colors if settings.pointcloud_color == "segmentation" else rgb
            out["points"] = point_cloud(
                metric, intrinsics, source, labels, settings.pointcloud_stride, cloud_max,
                class_ids(self.preset, settings.pointcloud_exclude_classes),
                settings.pointcloud_organized)
        if "overlay" in wanted:
            out["overlay"] = overlay(rgb, colors, settings.overlay_alpha)
        if "depth_color" in wanted:
            value_range = self.preset.depth_range if self.preset.depth_range is not None \
                else depth_range(metric.cpu().numpy(), self.preset)
            out["depth_color"] = depth_colors(metric, value_range, self.plasma)
        if normals is not None and "normals_color" in wanted:
            out["normals_color"] = normals_colors(normals)
        return out


def download(outputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Every output to the host in one transfer: packed into one byte buffer on the device,
    copied once (into pinned memory from CUDA, with one synchronisation), then viewed as the
    arrays the messages take their bytes from. Point clouds come back as POINT_DTYPE."""
    if not outputs:
        return {}
    names = list(outputs)
    flat = [outputs[n].contiguous().view(-1).view(torch.uint8) for n in names]
    packed = torch.cat(flat)
    if packed.is_cuda:
        host = torch.empty(packed.shape, dtype=torch.uint8, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        torch.cuda.current_stream(packed.device).synchronize()
    else:
        host = packed
    buffer = host.numpy()
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, part in zip(names, flat):
        tensor = outputs[name]
        chunk = buffer[offset:offset + part.numel()]
        offset += part.numel()
        if name == "points":
            arrays[name] = chunk.view(POINT_DTYPE).reshape(tensor.shape[:-1])
        else:
            dtype = {torch.uint8: np.uint8, torch.int32: np.int32, torch.float32: np.float32,
                     torch.int16: np.int16}[tensor.dtype]
            arrays[name] = chunk.view(dtype).reshape(tuple(tensor.shape))
    if "labels" in arrays and arrays["labels"].dtype == np.int32:  # > 256 classes
        arrays["labels"] = arrays["labels"].astype(np.uint16)
    return arrays


def prediction_tensors(pred: Prediction, device: torch.device) -> dict[str, torch.Tensor | None]:
    """A host Prediction as tensors on ``device`` (for tests and the CPU check of this code)."""
    def as_tensor(array):
        return None if array is None else torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return {"labels": as_tensor(pred.labels), "depth": as_tensor(pred.depth),
            "normals": as_tensor(pred.normals), "confidence": as_tensor(pred.confidence)}
