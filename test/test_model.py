"""The network: the official key layout, parameter counts, output shapes, and agreement with
an independent transcription of the architecture in the design notes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

from conftest import make_model
from hydranet_ros.model import HydraNet, count_trainable_parameters


def read_key_layout(path) -> list[tuple[str, tuple[int, ...]]]:
    layout = []
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        layout.append((key, tuple(int(x) for x in shape.strip("()").split(",") if x.strip())))
    return layout


def test_state_dict_matches_official_layout(reference):
    official = read_key_layout(reference / "official_state_dict_keys_nyud_three.txt")
    ours = [(k, tuple(v.shape)) for k, v in HydraNet(40, 3).state_dict().items()]
    assert len(official) == 346
    assert ours == official


def test_two_task_model_has_no_normal_head(reference):
    official = read_key_layout(reference / "official_state_dict_keys_nyud_three.txt")
    expected = [(k, s) for k, s in official if not k.startswith(("pre_normal", "normal"))]
    expected = [(k, (6,) + s[1:]) if k.startswith("segm.") else (k, s) for k, s in expected]
    assert [(k, tuple(v.shape)) for k, v in HydraNet(6, 2).state_dict().items()] == expected


@pytest.mark.parametrize("classes, tasks, millions", [(6, 2, 2.99), (40, 3, 3.08)])
def test_parameter_counts(classes, tasks, millions):
    assert round(count_trainable_parameters(HydraNet(classes, tasks)) / 1e6, 2) == millions


@pytest.mark.parametrize("height, width", [(64, 64), (370, 1226), (97, 131)])
def test_outputs_are_a_quarter_of_the_input(height, width):
    model = HydraNet(40, 3).eval()
    with torch.inference_mode():
        segm, depth, normals = model(torch.zeros(1, 3, height, width))
    quarter = (math.ceil(height / 4), math.ceil(width / 4))
    assert segm.shape == (1, 40) + quarter
    assert depth.shape == (1, 1) + quarter
    assert normals.shape == (1, 3) + quarter


def test_rejects_unsupported_task_count():
    with pytest.raises(ValueError, match="num_tasks"):
        HydraNet(6, 4)


# An independent transcription of the architecture described in
# ../shared/seed/hydranet_design_notes.md, written plainly and kept apart from the package.

def _cbr(cin, cout, k, stride=1, groups=1, act=True):
    mods = [tnn.Conv2d(cin, cout, k, stride=stride, padding=int(k / 2.0), groups=groups, bias=False),
            tnn.BatchNorm2d(cout, affine=True, eps=1e-5, momentum=0.1)]
    if act:
        mods.append(tnn.ReLU6(inplace=True))
    return tnn.Sequential(*mods)


class _NotesIRB(tnn.Module):
    def __init__(self, cin, cout, t, stride):
        super().__init__()
        mid = cin * t
        self.residual = cin == cout and stride == 1
        self.output = tnn.Sequential(_cbr(cin, mid, 1), _cbr(mid, mid, 3, stride=stride, groups=mid),
                                     _cbr(mid, cout, 1, act=False))

    def forward(self, x):
        out = self.output(x)
        return out + x if self.residual else out


class _NotesCRP(tnn.Module):
    def __init__(self, cin, cout, n, groups=False):
        super().__init__()
        for i in range(n):
            setattr(self, f"{i + 1}_outvar_dimred",
                    tnn.Conv2d(cin if i == 0 else cout, cout, 1, bias=False,
                               groups=cin if groups else 1))
        self.n = n
        self.maxpool = tnn.MaxPool2d(kernel_size=5, stride=1, padding=2)

    def forward(self, x):
        top = x
        for i in range(self.n):
            top = self.maxpool(top)
            top = getattr(self, f"{i + 1}_outvar_dimred")(top)
            x = top + x
        return x


class NotesHydraNet(tnn.Module):
    config = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
              [6, 160, 3, 2], [6, 320, 1, 1]]

    def __init__(self, num_classes, num_tasks):
        super().__init__()
        self.num_tasks = num_tasks
        cin = 32
        self.layer1 = _cbr(3, cin, 3, stride=2)
        for n_layer, (t, c, n, s) in enumerate(self.config, start=2):
            blocks = []
            for idx in range(n):
                blocks.append(_NotesIRB(cin, c, t, s if idx == 0 else 1))
                cin = c
            setattr(self, f"layer{n_layer}", tnn.Sequential(*blocks))
        conv1 = lambda a, b, g=1: tnn.Conv2d(a, b, 1, bias=False, groups=g)  # noqa: E731
        conv3 = lambda a, b: tnn.Conv2d(a, b, 3, padding=1, bias=True)  # noqa: E731
        self.conv8, self.conv7, self.conv6 = conv1(320, 256), conv1(160, 256), conv1(96, 256)
        self.conv5, self.conv4, self.conv3 = conv1(64, 256), conv1(32, 256), conv1(24, 256)
        self.crp4 = tnn.Sequential(_NotesCRP(256, 256, 4))
        self.crp3 = tnn.Sequential(_NotesCRP(256, 256, 4))
        self.crp2 = tnn.Sequential(_NotesCRP(256, 256, 4))
        self.crp1 = tnn.Sequential(_NotesCRP(256, 256, 4, groups=True))
        self.conv_adapt4, self.conv_adapt3 = conv1(256, 256), conv1(256, 256)
        self.conv_adapt2 = conv1(256, 256)
        self.pre_depth, self.depth = conv1(256, 256, 256), conv3(256, 1)
        self.pre_segm, self.segm = conv1(256, 256, 256), conv3(256, num_classes)
        self.relu = tnn.ReLU6(inplace=True)
        if num_tasks == 3:
            self.pre_normal, self.normal = conv1(256, 256, 256), conv3(256, 3)

    def forward(self, x):
        x = self.layer2(self.layer1(x))
        l3 = self.layer3(x)
        l4 = self.layer4(l3)
        l5 = self.layer5(l4)
        l6 = self.layer6(l5)
        l7 = self.layer7(l6)
        l8 = self.layer8(l7)
        l7 = self.relu(self.conv8(l8) + self.conv7(l7))
        l7 = self.conv_adapt4(self.crp4(l7))
        l7 = F.interpolate(l7, size=l6.shape[2:], mode="bilinear", align_corners=False)
        l5 = self.relu(self.conv5(l5) + self.conv6(l6) + l7)
        l5 = self.conv_adapt3(self.crp3(l5))
        l5 = F.interpolate(l5, size=l4.shape[2:], mode="bilinear", align_corners=False)
        l4 = self.relu(l5 + self.conv4(l4))
        l4 = self.conv_adapt2(self.crp2(l4))
        l4 = F.interpolate(l4, size=l3.shape[2:], mode="bilinear", align_corners=False)
        l3 = self.crp1(self.relu(self.conv3(l3) + l4))
        outs = (self.segm(self.relu(self.pre_segm(l3))), self.depth(self.relu(self.pre_depth(l3))))
        if self.num_tasks == 3:
            outs += (self.normal(self.relu(self.pre_normal(l3))),)
        return outs


@pytest.mark.parametrize("classes, tasks, size", [(40, 3, (96, 128)), (6, 2, (75, 203))])
def test_matches_independent_transcription(classes, tasks, size):
    ours = make_model(classes, tasks, seed=3)
    notes = NotesHydraNet(classes, tasks)
    notes.load_state_dict(ours.state_dict(), strict=True)
    notes.eval()
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a, b = ours(x), notes(x)
    assert len(a) == len(b) == tasks
    for mine, theirs in zip(a, b):
        assert mine.abs().mean() > 0.05, "outputs too small for the comparison to mean anything"
        assert (mine - theirs).abs().max().item() < 1e-5
