"""HydraNet: a MobileNetV2 encoder and a Light-Weight RefineNet decoder with task heads.

The module tree mirrors the authors' release (DrSleep/multi-task-refinenet, ``src/models.py``)
attribute for attribute, because the official checkpoints are plain state dicts: a key that is
named or ordered differently would make them unloadable with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: MobileNetV2 stages as (expansion, output channels, repeats, first stride); one ``layerN`` each.
MOBILENET_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
DECODER_CHANNELS = 256
CRP_STAGES = 4
#: The network's outputs are this many times smaller than its input (rounded up).
OUTPUT_STRIDE = 4
TASK_NAMES = ("segmentation", "depth", "normals")


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
            relu6: bool = True) -> nn.Sequential:
    """Conv-BN(-ReLU6) as a Sequential, so that its keys are ``0.weight`` and ``1.*``."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups,
                  bias=False),
        nn.BatchNorm2d(out_ch, eps=1e-5, momentum=0.1),
    ]
    if relu6:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


def conv1x1(in_ch: int, out_ch: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, bias=False, groups=groups)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=True)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection, skip if shapes match."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.use_skip = in_ch == out_ch and stride == 1
        # Named ``output`` because that is the key prefix in the official checkpoints.
        self.output = nn.Sequential(
            conv_bn(in_ch, hidden, 1),
            conv_bn(hidden, hidden, 3, stride=stride, groups=hidden),
            conv_bn(hidden, out_ch, 1, relu6=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.output(x)
        return out + x if self.use_skip else out


class CRPBlock(nn.Module):
    """Chained residual pooling: repeated 5x5 max-pool + 1x1 conv, each summed onto the input.

    ``depthwise`` makes every 1x1 conv grouped per channel (the release's ``crp1``).
    """

    def __init__(self, channels: int, stages: int, depthwise: bool = False) -> None:
        super().__init__()
        self.stages = stages
        groups = channels if depthwise else 1
        for i in range(stages):
            self.add_module(self._conv_name(i), conv1x1(channels, channels, groups=groups))
        self.pool = nn.MaxPool2d(kernel_size=5, stride=1, padding=2)

    @staticmethod
    def _conv_name(i: int) -> str:
        return f"{i + 1}_outvar_dimred"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for i in range(self.stages):
            top = getattr(self, self._conv_name(i))(self.pool(top))
            x = x + top
        return x


def _upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


class HydraNet(nn.Module):
    """Multi-task dense prediction network (Nekrasov et al., ICRA 2019).

    ``forward`` returns a tuple ``(segmentation logits, depth[, normals])`` at 1/4 of the input
    resolution; depth is signed (the release takes ``abs()``) and normals are not normalised.
    """

    def __init__(self, num_classes: int, num_tasks: int = 2) -> None:
        super().__init__()
        if num_tasks not in (2, 3):
            raise ValueError(f"num_tasks must be 2 (segmentation + depth) or 3 (+ normals), got {num_tasks}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.num_tasks = num_tasks

        self.layer1 = conv_bn(3, STEM_CHANNELS, 3, stride=2)
        in_ch = STEM_CHANNELS
        for index, (expansion, out_ch, repeats, stride) in enumerate(MOBILENET_STAGES, start=2):
            blocks = []
            for r in range(repeats):
                blocks.append(InvertedResidual(in_ch, out_ch, expansion, stride if r == 0 else 1))
                in_ch = out_ch
            self.add_module(f"layer{index}", nn.Sequential(*blocks))

        c = DECODER_CHANNELS
        # Registration order fixes the state_dict order, which matches the release's.
        self.conv8 = conv1x1(320, c)
        self.conv7 = conv1x1(160, c)
        self.conv6 = conv1x1(96, c)
        self.conv5 = conv1x1(64, c)
        self.conv4 = conv1x1(32, c)
        self.conv3 = conv1x1(24, c)
        self.crp4 = nn.Sequential(CRPBlock(c, CRP_STAGES))
        self.crp3 = nn.Sequential(CRPBlock(c, CRP_STAGES))
        self.crp2 = nn.Sequential(CRPBlock(c, CRP_STAGES))
        self.crp1 = nn.Sequential(CRPBlock(c, CRP_STAGES, depthwise=True))
        self.conv_adapt4 = conv1x1(c, c)
        self.conv_adapt3 = conv1x1(c, c)
        self.conv_adapt2 = conv1x1(c, c)
        self.pre_depth = conv1x1(c, c, groups=c)
        self.depth = conv3x3(c, 1)
        self.pre_segm = conv1x1(c, c, groups=c)
        self.segm = conv3x3(c, num_classes)
        if num_tasks == 3:
            self.pre_normal = conv1x1(c, c, groups=c)
            self.normal = conv3x3(c, 3)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The release's initialisation: N(0, 0.01) convolutions, zero biases, identity BN."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.layer2(self.layer1(x))
        l3 = self.layer3(x)  # 24 ch, 1/4
        l4 = self.layer4(l3)  # 32 ch, 1/8
        l5 = self.layer5(l4)  # 64 ch, 1/16
        l6 = self.layer6(l5)  # 96 ch, 1/16
        l7 = self.layer7(l6)  # 160 ch, 1/32
        l8 = self.layer8(l7)  # 320 ch, 1/32

        d = F.relu6(self.conv8(l8) + self.conv7(l7))
        d = _upsample_to(self.conv_adapt4(self.crp4(d)), l6)
        d = F.relu6(self.conv5(l5) + self.conv6(l6) + d)
        d = _upsample_to(self.conv_adapt3(self.crp3(d)), l4)
        d = F.relu6(self.conv4(l4) + d)
        d = _upsample_to(self.conv_adapt2(self.crp2(d)), l3)
        d = self.crp1(F.relu6(self.conv3(l3) + d))

        outputs = (
            self.segm(F.relu6(self.pre_segm(d))),
            self.depth(F.relu6(self.pre_depth(d))),
        )
        if self.num_tasks == 3:
            outputs += (self.normal(F.relu6(self.pre_normal(d))),)
        return outputs


def count_trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
