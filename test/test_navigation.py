"""The Nav2 recipe: every class of a preset in exactly one group with its costs, the node's
topics, and the shipped parameter files equal to what hydranet-nav2 writes."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO
from hydranet_ros.cli import nav2 as nav2_cli
from hydranet_ros.navigation import PLUGIN, layer_parameters, nav2_params_yaml
from hydranet_ros.presets import get_preset, navigation_groups, preset_for_model, preset_names

#: The layer's per-class-type parameters (kiwicampus/semantic_segmentation_layer).
CLASS_TYPE_KEYS = {"classes", "base_cost", "max_cost", "mark_confidence", "samples_to_max_cost",
                   "dominant_priority"}


@pytest.mark.parametrize("name", preset_names())
def test_every_class_is_in_exactly_one_group(name):
    preset = get_preset(name)
    source = layer_parameters(preset)["hydranet"]
    listed = [c for group in source["class_types"] for c in source[group]["classes"]]
    assert sorted(listed) == sorted(preset.class_names)
    for group in source["class_types"]:
        assert set(source[group]) <= CLASS_TYPE_KEYS, group
        assert 0 <= source[group]["base_cost"] <= source[group]["max_cost"] <= 254
        assert source[group]["classes"], f"{group} is empty (the layer would skip it)"


def test_the_groups_say_what_a_robot_expects():
    kitti = get_preset("kitti")
    group = dict(zip(kitti.class_names, kitti.navigation))
    assert group["road"] == group["sidewalk"] == "traversable"
    assert group["car"] == group["building"] == "obstacle"
    nyud = get_preset("nyud")
    group = dict(zip(nyud.class_names, nyud.navigation))
    assert group["floor"] == "traversable" and group["chair"] == "obstacle"
    assert group["person"] == "person" and navigation_groups()["person"]["dominant_priority"]
    assert navigation_groups()["obstacle"]["max_cost"] == 254  # lethal
    assert preset_for_model(7, 2).navigation == ("obstacle",) * 7


def test_the_layer_reads_the_nodes_topics():
    params = layer_parameters(get_preset("kitti"), namespace="robot/cam")
    source = params["hydranet"]
    assert params["plugin"] == PLUGIN and params["observation_sources"] == "hydranet"
    assert source["segmentation_topic"] == "/robot/cam/segmentation/labels"
    assert source["confidence_topic"] == "/robot/cam/segmentation/confidence"
    assert source["labels_topic"] == "/robot/cam/segmentation/label_info"
    assert source["pointcloud_topic"] == "/robot/cam/points"


@pytest.mark.parametrize("name", ["kitti", "nyud", "synthetic"])
def test_shipped_parameter_files_are_what_the_command_writes(name, tmp_path):
    shipped = REPO / "config" / f"nav2_semantic_segmentation_{name}.yaml"
    assert shipped.read_text() == nav2_params_yaml(get_preset(name))
    document = yaml.safe_load(shipped.read_text())
    layer = document["local_costmap"]["local_costmap"]["ros__parameters"]
    assert layer["semantic_segmentation_layer"]["plugin"] == PLUGIN
    out = tmp_path / "layer.yaml"
    assert nav2_cli.main(["--preset", name, "--out", str(out)]) == 0
    assert out.read_text() == shipped.read_text()
    with pytest.raises(Exception, match="refusing to overwrite"):
        nav2_cli.main(["--preset", name, "--out", str(out)])


def test_a_bad_namespace_or_output_path_is_one_line(tmp_path, capsys):
    from hydranet_ros.cli.common import run_main
    with pytest.raises(SystemExit) as exit_info:
        nav2_cli.main(["--preset", "kitti", "--namespace", "robot/1cam"])
    assert exit_info.value.code == 2
    assert "'robot/1cam' is not a ROS namespace: '1cam'" in capsys.readouterr().err
    a_file = tmp_path / "a_file"
    a_file.touch()
    out = a_file / "layer.yaml"
    assert run_main(nav2_cli.main, ["--preset", "kitti", "--out", str(out)],
                    prog=nav2_cli.PROG) == 1
    assert capsys.readouterr().err == (f"{nav2_cli.PROG}: error: [Errno 20] Not a directory: "
                                       f"'{out}'\n")
