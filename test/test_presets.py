"""Presets against the release's own data files and published facts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hydranet_ros.presets import (PresetError, check_compatible, get_preset, pascal_palette,
                                  preset_for_model, preset_names)


def test_official_presets_exist():
    assert preset_names()[:3] == ["kitti", "nyud", "nyud_three"]
    shapes = {name: (get_preset(name).num_classes, get_preset(name).num_tasks)
              for name in ("kitti", "nyud", "nyud_three")}
    assert shapes == {"kitti": (6, 2), "nyud": (40, 2), "nyud_three": (40, 3)}


def test_kitti_colours_match_release(reference):
    cmap = np.load(reference / "cmap_kitti.npy")
    preset = get_preset("kitti")
    assert np.array_equal(preset.colors, cmap[:6])
    assert tuple(preset.ignore_color) == tuple(cmap[6])
    assert preset.class_names == ("sky", "building", "road", "sidewalk", "vegetation", "car")


@pytest.mark.parametrize("name", ["nyud", "nyud_three"])
def test_nyud_colours_match_release(reference, name):
    """The release indexes its NYUD map with class id + 1; row 0 is what ignore (255+1) shows."""
    cmap = np.load(reference / "cmap_nyud.npy")
    preset = get_preset(name)
    assert np.array_equal(preset.colors, cmap[1:41])
    assert tuple(preset.ignore_color) == tuple(cmap[0])
    assert len(set(preset.class_names)) == 40


def test_pascal_palette_generates_the_release_map(reference):
    assert np.array_equal(pascal_palette(256), np.load(reference / "cmap_nyud.npy"))


@pytest.mark.parametrize("name", ["kitti", "nyud", "nyud_three"])
def test_normalisation_and_depth_range(name):
    preset = get_preset(name)
    assert preset.scale == pytest.approx(1 / 255)
    assert preset.mean == (0.485, 0.456, 0.406)
    assert preset.std == (0.229, 0.224, 0.225)
    assert preset.depth_range == ((0.0, 80.0) if name == "kitti" else (0.0, 8.0))


def test_weights_facts_match_release_readme(reference):
    table = dict(re.findall(r"\| weights/(\w+\.ckpt) \| ([0-9a-f]{40}) \|",
                            (reference / "README.md").read_text()))
    for name in ("kitti", "nyud", "nyud_three"):
        weights = get_preset(name).weights
        assert table[weights.file] == weights.git_blob


def test_unknown_preset_is_one_line():
    with pytest.raises(PresetError, match="unknown preset 'cityscapes' \\(known: kitti, nyud"):
        get_preset("cityscapes")


def test_preset_for_model():
    assert preset_for_model(6, 2).name == "kitti"
    assert preset_for_model(40, 3).name == "nyud_three"
    generic = preset_for_model(19, 2)
    assert generic.name == "generic" and generic.num_classes == 19
    assert generic.depth_range is None
    assert len({tuple(c) for c in generic.colors}) == 19


def test_check_compatible():
    check_compatible(get_preset("nyud"), 40, "w.ckpt")
    with pytest.raises(PresetError, match="w.ckpt has 6 classes but preset 'nyud' has 40"):
        check_compatible(get_preset("nyud"), 6, "w.ckpt")
