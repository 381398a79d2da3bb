"""Every inference backend and precision against the fp32 PyTorch result on the same inputs,
the automatic choice and its fall-backs, the export cache, hydranet-export and the batching."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import guard_model, import_or_skip, make_model
from hydranet_ros import weights as weights_mod
from hydranet_ros.checkpoint import load_model, save_checkpoint
from hydranet_ros.cli import export as export_cli
from hydranet_ros.engines import EngineError, build_engine, create_engine
from hydranet_ros.engines import openvino_engine
from hydranet_ros.engines.base import normalization_table, normalize_nhwc
from hydranet_ros.engines.export import cached_export, convert_to_ir
from hydranet_ros.engines.torch_engine import TorchEngine, fold_batchnorm
from hydranet_ros.evaluation import held_out_frame
from hydranet_ros.errors import HydraNetError
from hydranet_ros.postprocess import CONFIDENCE, PARTS
from hydranet_ros.predictor import Predictor
from hydranet_ros.presets import get_preset
from hydranet_ros.synthetic.render import SyntheticWorld

CPU = torch.device("cpu")
#: Mean confidence on right pixels above that on wrong ones (0-255 scale); see the test.
CONFIDENCE_MARGIN = 40
CUDA = torch.cuda.is_available()


def backend_cases() -> list:
    """(backend, precision, device) of every engine to guard; absent ones skip with a reason."""
    cases = [("torch", "fp32", "cpu"), ("openvino", "fp32", "cpu"), ("openvino", "bf16", "cpu"),
             ("onnxruntime", "fp32", "cpu"), ("torch", "fp32", "cuda"), ("torch", "fp16", "cuda"),
             ("torch", "bf16", "cuda"), ("onnxruntime", "fp32", "cuda")]
    return [pytest.param(*case, id="-".join(case)) for case in cases]


def engine_or_skip(model, preset, backend: str, precision: str, device: str):
    """The engine, or a skip where this machine cannot have it (no GPU, no bf16 CPU, no GPU
    build of ONNX Runtime); an engine that should work here and fails to build fails."""
    if device == "cuda" and not CUDA:
        pytest.skip("no CUDA device on this machine")
    if backend == "openvino":
        import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
        if precision == "bf16" and not openvino_engine.cpu_supports_bf16():
            pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    if backend == "onnxruntime":
        ort = import_or_skip("onnxruntime", "onnxruntime is not installed (pip install -e .[engines])")
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            pytest.skip("the installed onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
    return build_engine(model, preset, backend, torch.device(device), precision)


@pytest.fixture(scope="module")
def trained():
    """The bundled weights (trained by this project) and held-out synthetic frames."""
    preset = get_preset("synthetic")
    model = load_model(weights_mod.resolve("synthetic"))
    world = SyntheticWorld(320, 240)
    images = [held_out_frame(world, k).rgb for k in (0, 7, 14)]
    reference = build_engine(model, preset, "reference", CPU)
    expected = [reference.predict([img], img.shape[:2], PARTS)[0] for img in images]
    return model, preset, images, expected


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(axis=-1), -1.0, 1.0)))


@pytest.mark.parametrize("backend,precision,device", backend_cases())
def test_trained_weights_agree_with_fp32_pytorch(trained, backend, precision, device):
    """The guards: labels agree on >= 99.5 % of pixels, median relative depth error <= 1 %,
    median normal angle <= 1 degree."""
    model, preset, images, expected = trained
    engine = engine_or_skip(model, preset, backend, precision, device)
    for img, ref in zip(images, expected):
        got = engine.predict([img], img.shape[:2], PARTS)[0]
        assert got.labels.shape == ref.labels.shape and got.labels.dtype == ref.labels.dtype
        assert (got.labels == ref.labels).mean() >= 0.995
        assert np.median(np.abs(got.depth - ref.depth) / ref.depth) <= 0.01
        assert np.median(angle_deg(got.normals, ref.normals)) <= 1.0


#: The guard on raw outputs: the root-mean-square difference from the eager fp32 reference,
#: relative to the reference's own RMS, per output. Measured on this machine (models of
#: ``guard_model``): fp32 backends 2e-7 to 6e-7, OpenVINO bf16 3e-3 to 7e-3. Zeroing the last
#: convolution of any module changes some output by 1.3e-2 or more (crp1, the one exception,
#: by 6e-4: only the fp32 guards see it); see test_the_guards_see_every_layer.
RAW_TOLERANCE = {"fp32": 1e-5, "fp16": 1e-2, "bf16": 1e-2}
#: fp32 on CUDA: cuDNN runs fp32 convolutions on TF32 tensor cores (PyTorch's default);
#: measured 1.7e-4 (6c2t) and 3.6e-4 (40c3t) on an NVIDIA H200.
CUDA_FP32_TOLERANCE = 1e-3
#: The two shapes of the guards: the KITTI layout and the NYUD three-task layout.
GUARD_SHAPES = [pytest.param(6, 2, "kitti", id="6c2t"), pytest.param(40, 3, "nyud_three", id="40c3t")]
#: Modules whose breakage the reduced-precision guards cannot see (measured effect 6e-4).
WEAK_MODULES = {"crp1"}


def relative_rms(reference: np.ndarray, other: np.ndarray) -> float:
    return float(np.sqrt(np.mean((other - reference) ** 2) / np.mean(reference ** 2)))


@pytest.fixture(scope="module")
def guard_batch() -> np.ndarray:
    """Two held-out synthetic frames of different streets, 128x96, as one batch."""
    world = SyntheticWorld(128, 96)
    return np.stack([held_out_frame(world, k).rgb for k in (3, 30)])


@pytest.mark.parametrize("classes,tasks,preset_name", GUARD_SHAPES)
@pytest.mark.parametrize("backend,precision,device", backend_cases())
def test_raw_outputs_agree_with_the_reference(guard_batch, classes, tasks, preset_name,
                                              backend, precision, device):
    preset = get_preset(preset_name)
    model = guard_model(classes, tasks)
    reference = build_engine(model, preset, "reference", CPU).infer(guard_batch)
    got = engine_or_skip(model, preset, backend, precision, device).infer(guard_batch)
    assert len(got) == tasks
    tolerance = CUDA_FP32_TOLERANCE if (device, precision) == ("cuda", "fp32") \
        else RAW_TOLERANCE[precision]
    for ref, out in zip(reference, got):
        assert out.shape == ref.shape == (2, ref.shape[1], 24, 32)
        assert relative_rms(ref, out) <= tolerance


def test_the_guards_see_every_layer(guard_batch):
    """Zeroing the last convolution of any module of the guard model moves its outputs far
    beyond the fp32 tolerance, and (but for WEAK_MODULES) beyond the reduced-precision one:
    a wrongly exported layer anywhere fails the guards."""
    preset = get_preset("nyud_three")
    model = guard_model(40, 3)
    reference = build_engine(model, preset, "reference", CPU).infer(guard_batch)
    modules = sorted({name.split(".")[0] for name in model.state_dict()})
    assert {"layer7", "crp4", "conv_adapt2", "segm", "normal"} <= set(modules)
    for name in modules:
        broken = copy.deepcopy(model)
        convs = [m for m in getattr(broken, name).modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            convs[-1].weight.zero_()
        out = build_engine(broken, preset, "reference", CPU).infer(guard_batch)
        change = max(relative_rms(r, o) for r, o in zip(reference, out))
        assert change > 10 * RAW_TOLERANCE["fp32"], name
        if name not in WEAK_MODULES:
            assert change > RAW_TOLERANCE["bf16"], (name, change)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_wrongly_exported_deep_layer_fails_the_guard(guard_batch, precision):
    """The guard applied to an OpenVINO export whose layer7 came out wrong (zeroed here)."""
    import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
    if precision == "bf16" and not openvino_engine.cpu_supports_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    preset = get_preset("nyud_three")
    model = guard_model(40, 3)
    reference = build_engine(model, preset, "reference", CPU).infer(guard_batch)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        [m for m in broken.layer7.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight.zero_()
    got = build_engine(broken, preset, "openvino", CPU, precision).infer(guard_batch)
    assert any(relative_rms(r, o) > RAW_TOLERANCE[precision] for r, o in zip(reference, got))


def test_on_device_postprocessing_matches_the_release_path(trained):
    """The CUDA path's post-processing (bicubic, argmax, normalisation in torch), run on the
    CPU here so it is checked on every machine."""
    model, preset, images, expected = trained
    engine = TorchEngine(model, preset, CPU, optimize=False, device_postprocess=True)
    for img, ref in zip(images, expected):
        got = engine.predict([img], img.shape[:2], PARTS)[0]
        assert got.labels.dtype == np.uint8 and got.depth.dtype == np.float32
        assert (got.labels == ref.labels).mean() >= 0.995
        assert np.median(np.abs(got.depth - ref.depth) / ref.depth) <= 0.01
        assert np.median(angle_deg(got.normals, ref.normals)) <= 1.0


def test_on_device_confidence_matches_the_host(trained):
    model, preset, images, _ = trained
    host = build_engine(model, preset, "reference", CPU)
    device = TorchEngine(model, preset, CPU, optimize=False, device_postprocess=True)
    parts = {"labels", CONFIDENCE}
    for img in images:
        ref = host.predict([img], img.shape[:2], parts)[0]
        got = device.predict([img], img.shape[:2], parts)[0]
        assert got.confidence.dtype == np.uint8 and got.confidence.shape == img.shape[:2]
        assert (np.abs(got.confidence.astype(int) - ref.confidence) <= 2).mean() >= 0.99


def test_confidence_is_higher_where_the_labels_are_right():
    """The bundled model on held-out frames of several streets (frames k of 0..99 come from
    streets k // 25): how sure it is where it is right, and where it is wrong."""
    preset = get_preset("synthetic")
    engine = build_engine(load_model(weights_mod.resolve("synthetic")), preset, "torch", CPU)
    world = SyntheticWorld(320, 240)
    right, wrong = [], []
    for k in range(0, 100, 10):
        frame = held_out_frame(world, k)
        pred = engine.predict([frame.rgb], frame.rgb.shape[:2], {"labels", CONFIDENCE})[0]
        scored = frame.labels != 255
        correct = pred.labels == frame.labels
        right.append(pred.confidence[scored & correct])
        wrong.append(pred.confidence[scored & ~correct])
    right_mean, wrong_mean = np.concatenate(right).mean(), np.concatenate(wrong).mean()
    print(f"mean confidence (0-255): {right_mean:.1f} on correctly labelled pixels, "
          f"{wrong_mean:.1f} on wrong ones")
    assert right_mean > wrong_mean + CONFIDENCE_MARGIN


def test_batch_norm_folding_keeps_the_outputs():
    model = make_model(6, 2, seed=4)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model(x), fold_batchnorm(model)(x)):
            # randomised deep networks amplify rounding; a wrong fold is off by O(1)
            assert (a - b).abs().max() <= 5e-3 * a.abs().max()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorm(model).modules())


def test_normalisation_table_is_the_release_arithmetic():
    preset = get_preset("kitti")
    image = np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3) % 256
    image = image.astype(np.uint8)
    expected = ((image * preset.scale - np.asarray(preset.mean)) / np.asarray(preset.std))
    assert np.array_equal(normalize_nhwc(image[None], preset)[0], expected.astype(np.float32))
    assert normalization_table(tuple(preset.mean), tuple(preset.std), preset.scale).shape == (1, 256, 3)


def test_batches_group_by_network_size():
    model = make_model(6, 2, seed=6)
    predictor = Predictor.for_model(model, get_preset("kitti"))
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, shape, dtype=np.uint8)
              for shape in ((64, 96, 3), (64, 96, 3), (32, 64, 3))]
    together = predictor.predict_many(images, [None, None, None])
    for image, result in zip(images, together):
        alone = predictor.predict(image)
        assert result.labels.shape == image.shape[:2]
        assert (result.labels == alone.labels).mean() >= 0.995
        # a batch runs other convolution kernels than one image (more so on many-core CPUs):
        # close everywhere, not equal; another image's results would be far off
        relative = np.abs(result.depth - alone.depth) / np.abs(alone.depth).mean()
        assert np.median(relative) <= 1e-3 and relative.max() <= 0.05


def test_auto_picks_a_fast_backend_and_says_why():
    lines: list[str] = []
    engine = create_engine(make_model(6, 2), get_preset("kitti"), "auto", "cpu", log=lines.append)
    assert lines and lines[-1].startswith("inference backend:") and "(" in lines[-1]
    assert engine.backend in ("openvino", "onnxruntime", "torch")


def test_missing_backend_falls_back_to_pytorch(monkeypatch):
    def missing():
        raise EngineError("the 'openvino' package is not installed (test)")
    monkeypatch.setattr(openvino_engine, "shared_core", missing)
    warnings: list[str] = []
    engine = create_engine(make_model(6, 2), get_preset("kitti"), "openvino", "cpu",
                           log=lambda _: None, warn=warnings.append)
    assert engine.backend == "torch" and engine.precision == "fp32"
    assert warnings == ["backend openvino not used: the 'openvino' package is not installed (test)"]


def test_unsupported_precision_falls_back_with_a_reason():
    warnings: list[str] = []
    engine = create_engine(make_model(6, 2), get_preset("kitti"), "torch", "cpu", "fp16",
                           log=lambda _: None, warn=warnings.append)
    assert engine.describe() == "torch fp32 on cpu"
    assert "supports precision fp32, not fp16" in warnings[0]


@pytest.mark.parametrize("backend, precision", [("openvino", "fp32"), ("openvino", "auto"),
                                                ("onnxruntime", "fp32")])
def test_a_backend_that_cannot_prepare_itself_hands_over_to_pytorch(tmp_path, monkeypatch,
                                                                     backend, precision):
    """OpenVINO and ONNX Runtime export on the first frame, long after they were chosen. An
    export that fails there (here: the cache folder is a file, which stops root too) was one
    error per frame for as long as the node ran; now PyTorch fp32 takes over with one warning,
    from the frame that failed, whose results are PyTorch's."""
    import_or_skip(backend, f"{backend} is not installed (pip install -e .[engines])")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    model, preset = make_model(6, 2, seed=3), get_preset("kitti")
    warnings: list[str] = []
    engine = create_engine(model, preset, backend, "cpu", precision, log=lambda _: None,
                           warn=warnings.append)
    assert engine.backend == backend and not warnings
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    got = engine.predict([image], (48, 64), PARTS)[0]
    assert (engine.backend, engine.precision) == ("torch", "fp32")
    takeovers = [line for line in warnings if "takes over" in line]
    assert len(takeovers) == 1 and "\n" not in takeovers[0], warnings
    assert takeovers[0].startswith(f"{backend}") and "exporting the model" in takeovers[0]
    assert "(fallback: " in engine.describe()
    want = build_engine(model, preset, "torch", CPU).predict([image], (48, 64), PARTS)[0]
    assert np.array_equal(got.labels, want.labels) and np.array_equal(got.depth, want.depth)
    engine.predict([image], (48, 64), PARTS)
    assert sum("takes over" in line for line in warnings) == 1  # once, not per frame


def test_a_hand_over_that_fails_is_said_once_and_not_retried():
    """Where PyTorch cannot take over either, each frame fails with one line naming both
    causes, without exporting again or building PyTorch again for every frame."""
    from hydranet_ros.engines.fallback import FallbackEngine
    calls = {"export": 0, "torch": 0}

    class Unprepared(TorchEngine):
        def predict(self, images, net_size, parts):
            calls["export"] += 1
            raise EngineError("exporting the model to openvino failed: disk full")

    def no_torch():
        calls["torch"] += 1
        raise RuntimeError("CUDA error: out of memory")
    warnings: list[str] = []
    primary = Unprepared(make_model(6, 2), get_preset("kitti"), CPU)
    primary.backend = "openvino"
    engine = FallbackEngine(primary, no_torch, warnings.append)
    image = np.zeros((32, 32, 3), np.uint8)
    for _ in range(3):
        with pytest.raises(EngineError, match="openvino fp32 on cpu failed: exporting the model "
                           "to openvino failed: disk full, and PyTorch could not take over: "
                           "RuntimeError: CUDA error: out of memory"):
            engine.predict([image], (32, 32), PARTS)
    assert calls == {"export": 1, "torch": 1} and not warnings


def test_a_bad_frame_does_not_hand_the_backend_over(tmp_path, monkeypatch):
    """Only preparing the backend hands it over: a frame the engine refuses fails alone."""
    import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    warnings: list[str] = []
    engine = create_engine(make_model(6, 2), get_preset("kitti"), "openvino", "cpu", "fp32",
                           log=lambda _: None, warn=warnings.append)
    with pytest.raises(HydraNetError, match="expected a non-empty"):
        engine.infer(np.zeros((1, 8, 8, 4), np.uint8))
    assert engine.backend == "openvino" and not warnings
    assert len(engine.infer(np.zeros((1, 32, 32, 3), np.uint8))) == 2


def test_exports_are_cached_per_weights_and_shape():
    import_or_skip("onnxruntime", "onnxruntime is not installed (pip install -e .[engines])")
    model = make_model(6, 2, seed=8)
    first = cached_export(model, "onnx", (64, 96), 1)
    stamp = first.stat().st_mtime_ns
    assert cached_export(model, "onnx", (64, 96), 1) == first and first.stat().st_mtime_ns == stamp
    assert cached_export(model, "onnx", (32, 96), 1) != first
    assert cached_export(make_model(6, 2, seed=9), "onnx", (64, 96), 1) != first


def test_onnx_and_ir_of_the_same_weights_and_shape_both_stay_cached():
    """Both live in one folder (the same weights, shape and precision); each keeps its own
    manifest, so using one backend, then the other, then the first again exports nothing
    more (with one manifest for the folder, each export recorded itself over the other)."""
    import_or_skip("onnxruntime", "onnxruntime is not installed (pip install -e .[engines])")
    import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
    model = make_model(6, 2, seed=14)
    onnx, ir = (cached_export(model, fmt, (64, 64), 1) for fmt in ("onnx", "openvino"))
    assert onnx.parent == ir.parent
    lines: list[str] = []
    for fmt, path in [("onnx", onnx), ("openvino", ir)] * 2:
        stamp = path.stat().st_mtime_ns
        assert cached_export(model, fmt, (64, 64), 1, log=lines.append) == path
        assert path.stat().st_mtime_ns == stamp
    assert lines == []


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_a_tampered_cache_is_rebuilt_not_trusted(fmt):
    import_or_skip("onnxruntime" if fmt == "onnx" else "openvino",
                   "the backend is not installed (pip install -e .[engines])")
    model = make_model(6, 2, seed=13)
    path = cached_export(model, fmt, (64, 64), 1)
    tampered = path.with_suffix(".bin") if fmt == "openvino" else path
    original = tampered.read_bytes()
    tampered.write_bytes(original[:-64] + bytes(64))
    lines: list[str] = []
    assert cached_export(model, fmt, (64, 64), 1, log=lines.append) == path
    assert tampered.read_bytes() == original
    assert "the cached copy failed verification" in lines[0]


def test_a_failed_openvino_conversion_is_one_line_and_leaves_nothing(tmp_path):
    """The conversion runs in a process of its own (``convert_to_ir``): its failure comes
    back as one line naming it, and no IR is left behind."""
    import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(EngineError, match="OpenVINO conversion of the ONNX model failed: ") as info:
        convert_to_ir(broken, tmp_path / "model.xml", fp16=False)
    assert "\n" not in str(info.value) and not (tmp_path / "model.xml").exists()


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_export_command(tmp_path, fmt, capsys):
    import_or_skip("onnxruntime" if fmt == "onnx" else "openvino",
                   "the backend is not installed (pip install -e .[engines])")
    weights = tmp_path / "w.ckpt"
    save_checkpoint(make_model(6, 2, seed=2), weights)
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.xml")
    args = ["--weights", str(weights), "--format", fmt, "--size", "64x96", "--out", str(out)]
    assert export_cli.main(args) == 0
    assert "input 'image' (1, 3, 64, 96)" in capsys.readouterr().err
    if fmt == "onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        assert [i.shape for i in session.get_inputs()] == [[1, 3, 64, 96]]
        assert [o.name for o in session.get_outputs()] == ["segmentation", "depth"]
    else:
        assert out.with_suffix(".bin").stat().st_size > 1_000_000
    with pytest.raises(Exception, match="refusing to overwrite"):
        export_cli.main(args)
    with pytest.raises(Exception, match="HEIGHTxWIDTH"):
        export_cli.main(args[:-3] + ["sixty", "--out", str(tmp_path / "x.onnx")])


def test_first_export_is_announced_once():
    import_or_skip("onnxruntime", "onnxruntime is not installed (pip install -e .[engines])")
    lines: list[str] = []
    engine = build_engine(make_model(6, 2, seed=12), get_preset("kitti"), "onnxruntime", CPU,
                          log=lines.append)
    batch = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    engine.infer(batch)
    engine.infer(batch)
    assert len(lines) == 1 and lines[0].startswith("exporting the model to onnx for 1x64x64")


def test_create_engine_says_the_engines_caveat(monkeypatch):
    """An engine's caveat on this machine (int8 without VNNI) reaches the user once, as a
    warning, wherever engines are created (the node, the commands)."""
    import hydranet_ros.engines as engines
    model, preset = make_model(6, 2), get_preset("kitti")
    built = build_engine(model, preset, "torch", CPU, "fp32")
    built.caveat = "int8 here costs accuracy"
    monkeypatch.setattr(engines, "build_engine", lambda *args, **kwargs: built)
    logs: list[str] = []
    warnings: list[str] = []
    assert create_engine(model, preset, "torch", "cpu", "fp32", log=logs.append,
                         warn=warnings.append) is built
    assert warnings == ["int8 here costs accuracy"] and len(logs) == 1


@pytest.mark.parametrize("flags, expected", [
    ("fpu avx2 fma", False), ("fpu avx2 avx_vnni", True), ("avx512f avx512_vnni", True),
    ("amx_tile amx_int8", True), ("avx512_vnnix", False)])
def test_cpu_has_vnni_reads_the_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: "
                       f"{flags}\n")
    assert openvino_engine.cpu_has_vnni(cpuinfo) is expected
    assert openvino_engine.cpu_has_vnni(tmp_path / "missing") is None


def test_openvino_export_refuses_to_replace_an_existing_weights_file(tmp_path):
    """The IR is two files: an existing .bin beside the .xml is the user's too."""
    weights = tmp_path / "w.ckpt"
    save_checkpoint(make_model(6, 2, seed=2), weights)
    (tmp_path / "m.bin").write_bytes(b"someone's weights")
    args = ["--weights", str(weights), "--format", "openvino", "--size", "64x96",
            "--out", str(tmp_path / "m.xml")]
    with pytest.raises(HydraNetError, match=f"refusing to overwrite {tmp_path / 'm.bin'}"):
        export_cli.main(args)
    assert (tmp_path / "m.bin").read_bytes() == b"someone's weights"
    assert not (tmp_path / "m.xml").exists()


def test_engines_released_in_the_order_made_leave_signals_working(tmp_path):
    """OpenVINO's CPU plugin restores, on release, the alternate signal stack it found, even
    one freed since: two Cores released first made, first gone left the main thread's in
    unmapped memory, and the next Python signal handler killed the process with SIGSEGV. In a
    child process, as that is how it fails."""
    import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
    script = f"""
import gc, os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from conftest import make_model
from hydranet_ros.engines import create_engine
from hydranet_ros.presets import get_preset
frame = __import__("numpy").zeros((1, 64, 96, 3), "uint8")
first, second = (create_engine(make_model(6, 2), get_preset("kitti"), "openvino", "cpu", "fp32",
                               log=lambda _: None) for _ in range(2))
first.infer(frame); second.infer(frame)
del first; gc.collect()
del second; gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print("handled", flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
print("alive")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert (done.returncode, done.stdout) == (0, "handled\nalive\n"), done.stderr[-2000:]
