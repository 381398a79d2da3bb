"""Per-task losses, each masked to the pixels (and samples) that carry that annotation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..metrics import IGNORE


def upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at full resolution; 255 (and samples without labels) ignored."""
    if (labels == IGNORE).all():
        return logits.sum() * 0.0
    return F.cross_entropy(upsample(logits, labels.shape[-2:]), labels, ignore_index=IGNORE)


def depth_loss(raw: torch.Tensor, depth: torch.Tensor, max_depth: float,
               kind: str = "berhu") -> torch.Tensor:
    """On pixels with depth in (0, max_depth]. ``berhu``: the reverse Huber on metres, its
    threshold a fifth of the largest error (as in the paper); ``relative``: L1 divided by
    the true depth, which weighs near and far alike (the AbsRel metric)."""
    pred = upsample(raw, depth.shape[-2:])[:, 0].abs()
    valid = (depth > 0) & (depth <= max_depth)
    if not valid.any():
        return raw.sum() * 0.0
    error = (pred - depth)[valid].abs()
    if kind == "relative":
        return (error / depth[valid]).mean()
    threshold = (0.2 * error.max()).detach().clamp(min=1e-6)
    return torch.where(error <= threshold, error,
                       (error ** 2 + threshold ** 2) / (2 * threshold)).mean()


def normals_loss(raw: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """1 - cosine between predicted and true normals, where the truth is a unit vector."""
    pred = F.normalize(upsample(raw, normals.shape[-2:]), dim=1, eps=1e-6)
    valid = normals.norm(dim=1) > 0.5
    if not valid.any():
        return raw.sum() * 0.0
    cosine = (pred * normals).sum(dim=1)
    return (1.0 - cosine[valid]).mean()


def multitask_loss(outputs: tuple[torch.Tensor, ...], batch: dict, max_depth: float,
                   depth_kind: str, depth_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Each task's loss over the samples that have it; the total is their sum (depth's
    weighted by ``depth_weight``)."""
    losses = {}
    has = batch["has_labels"]
    if has.any():
        losses["segmentation"] = segmentation_loss(outputs[0][has].float(), batch["labels"][has])
    has = batch["has_depth"]
    if has.any():
        losses["depth"] = depth_loss(outputs[1][has].float(), batch["depth"][has], max_depth,
                                     depth_kind)
    has = batch["has_normals"]
    if len(outputs) > 2 and has.any():
        losses["normals"] = normals_loss(outputs[2][has].float(), batch["normals"][has])
    losses["total"] = sum(depth_weight * v if k == "depth" else v for k, v in losses.items())
    return losses
