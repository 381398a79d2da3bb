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

from .geometry import FLOAT32_MAX, POINT_DTYPE, Intrinsics
# each output in the packed buffer keeps room for its message around it (message_room.py)
from .message_room import layout_offsets
from .outputs import OutputSettings, class_ids, effective_max_depth
from .postprocess import Prediction
from .presets import Preset
from .visualize import PLASMA_RGB, label_palette

#: The entry of ``DeviceOutputs.compute`` that carries the point cloud's ``dense_flag`` through
#: the one transfer; ``unpack`` turns it into ``FrameArrays.cloud_is_dense``.
CLOUD_DENSE = "points_is_dense"


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
    """REP 118 depth with REP 117's meanings, as ``outputs.metric_depth``: +Inf beyond
    ``max_depth``, NaN where not positive or not a number."""
    return depth.masked_fill(~(depth > 0), float("nan")).masked_fill_(depth > max_depth,
                                                                       float("inf"))


def depth_colors(depth: torch.Tensor, value_range: tuple[float, float],
                 plasma: torch.Tensor) -> torch.Tensor:
    """The plasma map over ``value_range`` (OpenCV's convertScaleAbs, then the table); black
    where the depth is not finite. Scalars stay Python numbers, so the function can be
    captured in a CUDA graph (no host-to-device copies)."""
    low, high = value_range
    low32 = float(np.float32(low))
    scale = np.float32(255.0 / (high - low))
    # fmax(depth, low): NaN becomes low, as OpenCV's maximum does
    shifted = torch.where(depth >= low32, depth, torch.full_like(depth, low32))
    index = (shifted * scale + np.float32(-low * scale)).abs_().round_().clamp_(0, 255)
    colored = plasma[index.to(torch.long)]
    return colored * torch.isfinite(depth).unsqueeze(-1).to(torch.uint8)


def normals_colors(normals: torch.Tensor) -> torch.Tensor:
    """R = (x+1)/2, G = (y+1)/2, B = (1-z)/2, truncated, black where NaN, as
    ``visualize.colorize_normals``."""
    signed = torch.cat([normals[..., :2], -normals[..., 2:]], dim=-1)
    return torch.nan_to_num(((signed + 1.0) / 2.0) * 255.0, nan=0.0).to(torch.uint8)


def pack_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) uint8 -> (...) float32 holding 0x00RRGGBB (PCL's packed colour)."""
    wide = rgb.to(torch.int32)
    return (wide[..., 0] << 16 | wide[..., 1] << 8 | wide[..., 2]).view(torch.float32)


def point_cloud(depth: torch.Tensor, intr: Intrinsics, colors: torch.Tensor,
                labels: torch.Tensor, stride: int = 1, max_depth: float = float("inf"),
                excluded: torch.Tensor | None = None, organized: bool = True) -> torch.Tensor:
    """(rows, cols, 5) float32 laid out as POINT_DTYPE (x, y, z, rgb, label),
    or (1, N, 5) of the valid points; the same bytes as ``geometry.point_cloud``.
    ``excluded``: class ids (int64, on the depth's device) whose points are dropped."""
    z = depth[::stride, ::stride]
    sub_labels = labels[::stride, ::stride]
    valid = (z > 0) & (z <= min(max_depth, FLOAT32_MAX))  # NaN and +Inf compare false
    if excluded is not None and excluded.numel():
        valid &= ~torch.isin(sub_labels.long(), excluded)
    z = torch.where(valid, z, torch.full_like(z, float("nan")))
    f32 = dict(dtype=torch.float32, device=z.device)
    cols = torch.arange(z.shape[1], **f32) * stride
    rows = torch.arange(z.shape[0], **f32) * stride
    x = ((cols - np.float32(intr.cx)) / np.float32(intr.fx))[None, :] * z
    y = ((rows - np.float32(intr.cy)) / np.float32(intr.fy))[:, None] * z
    cloud = torch.stack([x, y, z, pack_rgb(colors[::stride, ::stride]),
                         sub_labels.to(torch.int32).view(torch.float32)], dim=-1)
    return cloud if organized else cloud[valid][None]


def dense_flag(cloud: torch.Tensor) -> torch.Tensor:
    """(1,) uint8: 1 where no point of the cloud has a NaN z (PointCloud2's ``is_dense``, as
    ``conversions.cloud_is_dense`` decides it on the host). Made on the device, so that the
    host need not read the whole cloud back through its cache to fill one byte."""
    return torch.isnan(cloud[..., 2]).any().logical_not().to(torch.uint8).reshape(1)


class DeviceOutputs:
    """The tables of one preset on one device, and the outputs of a frame made there."""

    def __init__(self, preset: Preset, device: torch.device) -> None:
        self.preset = preset
        self.device = device
        size = 256 if preset.num_classes <= 256 else 65536
        self.palette = torch.from_numpy(label_palette(preset, size)).to(device)
        self.plasma = torch.from_numpy(np.ascontiguousarray(PLASMA_RGB[:, 0])).to(device)
        self._excluded: dict[tuple[str, ...], torch.Tensor] = {}

    def excluded(self, names: tuple[str, ...]) -> torch.Tensor:
        """The ids of excluded classes on the device, made once per list (so that a frame's
        work has no host-to-device copy and can be captured in a CUDA graph)."""
        key = tuple(names)
        if key not in self._excluded:
            ids = class_ids(self.preset, key)
            self._excluded[key] = torch.as_tensor(ids, dtype=torch.long).to(self.device)
        return self._excluded[key]

    def fixed_shapes(self, settings: OutputSettings, wanted: set[str]) -> bool:
        """Whether every output's shape is known before the frame runs and no step reads
        values back to the host: the condition for capturing the work in a CUDA graph.
        Compact (non-organized) clouds vary in length; a depth colour range taken from
        each frame needs the frame's depth on the host."""
        if "points" in wanted and not settings.pointcloud_organized:
            return False
        return "depth_color" not in wanted or self.preset.depth_range is not None

    def compute(self, rgb: torch.Tensor, labels: torch.Tensor | None, depth: torch.Tensor | None,
                normals: torch.Tensor | None, confidence: torch.Tensor | None,
                settings: OutputSettings, wanted: set[str],
                intrinsics: Intrinsics | None = None) -> dict[str, torch.Tensor]:
        """The wanted outputs, as ``outputs.compute_outputs`` makes them, on the device; with
        the point cloud, its ``dense_flag`` as ``CLOUD_DENSE``."""
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
                self.excluded(settings.pointcloud_exclude_classes),
                settings.pointcloud_organized)
            out[CLOUD_DENSE] = dense_flag(out["points"])
        if "overlay" in wanted:
            out["overlay"] = overlay(rgb, colors, settings.overlay_alpha)
        if "depth_color" in wanted:
            value_range = self.preset.depth_range if self.preset.depth_range is not None \
                else depth_range(metric.cpu().numpy(), self.preset)
            out["depth_color"] = depth_colors(metric, value_range, self.plasma)
        if normals is not None and "normals_color" in wanted:
            out["normals_color"] = normals_colors(normals)
        return out


def pack(frames: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, list[list[tuple]]]:
    """The outputs of several frames as one byte tensor on their device (with room around
    each output, see ROOM_BEFORE), and per frame the layout ``unpack`` reads it back with:
    (name, dtype, shape, bytes, offset) per output."""
    tensors = [(name, t) for outputs in frames for name, t in outputs.items()]
    sizes = [t.numel() * t.element_size() for _, t in tensors]
    offsets, total = layout_offsets(sizes)
    parts, end = [], 0
    for (_, t), size, offset in zip(tensors, sizes, offsets):
        # the room is left unwritten (torch.empty): cat copies it, nothing reads it
        parts += [torch.empty(offset - end, dtype=torch.uint8, device=t.device),
                  t.contiguous().view(-1).view(torch.uint8)]
        end = offset + size
    if tensors:
        parts.append(torch.empty(total - end, dtype=torch.uint8, device=tensors[0][1].device))
    places = iter(zip(sizes, offsets))
    layouts = [[(name, t.dtype, tuple(t.shape), *next(places)) for name, t in outputs.items()]
               for outputs in frames]
    return (torch.cat(parts) if parts else torch.empty(0, dtype=torch.uint8)), layouts


def to_host(packed: torch.Tensor) -> torch.Tensor:
    """A device byte tensor on the host: from CUDA one non-blocking copy into fresh pinned
    memory and one synchronisation (the arrays made from it own that memory)."""
    if not packed.is_cuda:
        return packed
    host = torch.empty(packed.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(packed, non_blocking=True)
    torch.cuda.current_stream(packed.device).synchronize()
    return host


class FrameArrays(dict):
    """One frame's output arrays by name, as ``unpack`` makes them: views of a packed host
    buffer, each with ROOM_BEFORE and ROOM_AFTER bytes around it that belong to no array.
    ``room`` gives the buffer and the offset of an output still laid out so;
    ``cloud_is_dense`` the point cloud's ``is_dense`` where the device made it (None: the
    host decides)."""

    def __init__(self, arrays: dict[str, np.ndarray], buffer: np.ndarray,
                 offsets: dict[str, int], cloud_is_dense: bool | None = None) -> None:
        super().__init__(arrays)
        self.buffer = buffer
        self._placed = {name: (arrays[name], offset) for name, offset in offsets.items()}
        self._cloud_is_dense = cloud_is_dense

    @property
    def cloud_is_dense(self) -> bool | None:
        """Whether the point cloud has no NaN point, as the device found; None where unknown
        or where the cloud is no longer the array laid out (and found so) in the buffer."""
        return self._cloud_is_dense if self.room("points") is not None else None

    def copy(self) -> FrameArrays:
        """A new dict of the same arrays, laid out as before."""
        return FrameArrays(dict(self), self.buffer,
                           {name: offset for name, (_, offset) in self._placed.items()},
                           self._cloud_is_dense)

    def room(self, name: str) -> tuple[np.ndarray, int] | None:
        """(the byte buffer, where the output's bytes start in it), or None where the output
        is not the array laid out there (replaced, or converted after unpacking)."""
        placed = self._placed.get(name)
        if placed is None or self.get(name) is not placed[0]:
            return None
        return self.buffer, placed[1]


def unpack(buffer: np.ndarray, layouts: list[list[tuple]]) -> list[FrameArrays]:
    """Per frame, views of a host byte buffer as the arrays the messages take their bytes
    from; point clouds as POINT_DTYPE, labels of more than 256 classes as uint16."""
    frames: list[FrameArrays] = []
    for layout in layouts:
        arrays: dict[str, np.ndarray] = {}
        offsets: dict[str, int] = {}
        dense = None
        for name, dtype, shape, size, offset in layout:
            chunk = buffer[offset:offset + size]
            if name == CLOUD_DENSE:
                dense = bool(chunk[0])
                continue
            offsets[name] = offset
            if name == "points":
                arrays[name] = chunk.view(POINT_DTYPE).reshape(shape[:-1])
            else:
                arrays[name] = chunk.view(NUMPY_DTYPES[dtype]).reshape(shape)
        if "labels" in arrays and arrays["labels"].dtype == np.int32:  # > 256 classes
            arrays["labels"] = arrays["labels"].astype(np.uint16)  # not in the buffer
            del offsets["labels"]
        frames.append(FrameArrays(arrays, buffer, offsets, dense))
    return frames


NUMPY_DTYPES = {torch.uint8: np.uint8, torch.int32: np.int32, torch.float32: np.float32,
                torch.int16: np.int16}


def download(outputs: dict[str, torch.Tensor]) -> FrameArrays:
    """One frame's outputs to the host in one transfer, eagerly (what a frame plan does
    after its replay): packed into one byte buffer on the device, copied once (into pinned
    memory from CUDA, with one synchronisation), then viewed as the message arrays."""
    packed, layouts = pack([outputs])
    return unpack(to_host(packed).numpy(), layouts)[0]


def prediction_tensors(pred: Prediction, device: torch.device) -> dict[str, torch.Tensor | None]:
    """A host Prediction as tensors on ``device`` (for tests and the CPU check of this code)."""
    def as_tensor(array):
        return None if array is None else torch.from_numpy(np.ascontiguousarray(array)).to(device)
    return {"labels": as_tensor(pred.labels), "depth": as_tensor(pred.depth),
            "normals": as_tensor(pred.normals), "confidence": as_tensor(pred.confidence)}
