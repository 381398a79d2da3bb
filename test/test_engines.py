"""Every inference backend and precision against the fp32 PyTorch result on the same inputs,
the automatic choice and its fall-backs, the export cache, hydranet-export and the batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import import_or_skip, make_model
from hydranet_ros import weights as weights_mod
from hydranet_ros.checkpoint import load_model, save_checkpoint
from hydranet_ros.cli import export as export_cli
from hydranet_ros.engines import EngineError, build_engine, create_engine
from hydranet_ros.engines import openvino_engine
from hydranet_ros.engines.base import normalization_table, normalize_nhwc
from hydranet_ros.engines.export import cached_export
from hydranet_ros.engines.torch_engine import TorchEngine, fold_batchnorm
from hydranet_ros.evaluation import held_out_frame
from hydranet_ros.model import HydraNet
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
    if device == "cuda" and not CUDA:
        pytest.skip("no CUDA device on this machine")
    if backend == "openvino":
        import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
        if precision == "bf16" and not openvino_engine.cpu_supports_bf16():
            pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    if backend == "onnxruntime":
        import_or_skip("onnxruntime", "onnxruntime is not installed (pip install -e .[engines])")
    try:
        return build_engine(model, preset, backend, torch.device(device), precision)
    except EngineError as exc:
        if device == "cuda":
            pytest.skip(str(exc))
        raise


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


#: Raw outputs of a 40-class model with the release's initialisation: the largest difference
#: allowed, relative to the largest magnitude of that output (bf16 keeps 8 bits of mantissa).
#: (Randomised weights would not do: an untrained deep network amplifies rounding chaotically.)
RAW_TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "bf16": 5e-2}


@pytest.mark.parametrize("backend,precision,device", backend_cases())
def test_raw_outputs_of_a_40_class_model(backend, precision, device):
    preset = get_preset("nyud_three")
    torch.manual_seed(3)
    model = HydraNet(40, 3).eval()
    batch = np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3), dtype=np.uint8)
    reference = build_engine(model, preset, "reference", CPU).infer(batch)
    got = engine_or_skip(model, preset, backend, precision, device).infer(batch)
    for ref, out in zip(reference, got):
        assert out.shape == ref.shape == (1, ref.shape[1], 24, 32)
        assert np.abs(out - ref).max() <= RAW_TOLERANCE[precision] * np.abs(ref).max()


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
        assert np.allclose(result.depth, alone.depth, rtol=1e-3, atol=1e-3 * alone.depth.max())


def test_auto_picks_a_fast_backend_and_says_why():
    lines: list[str] = []
    engine = create_engine(make_model(6, 2), get_preset("kitti"), "auto", "cpu", log=lines.append)
    assert lines and lines[-1].startswith("inference backend:") and "(" in lines[-1]
    assert engine.backend in ("openvino", "onnxruntime", "torch")


def test_missing_backend_falls_back_to_pytorch(monkeypatch):
    def missing():
        raise EngineError("the 'openvino' package is not installed (test)")
    monkeypatch.setattr(openvino_engine, "_openvino", missing)
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


def test_exports_are_cached_per_weights_and_shape():
    import_or_skip("onnxruntime", "onnxruntime is not installed (pip install -e .[engines])")
    model = make_model(6, 2, seed=8)
    first = cached_export(model, "onnx", (64, 96), 1)
    stamp = first.stat().st_mtime_ns
    assert cached_export(model, "onnx", (64, 96), 1) == first and first.stat().st_mtime_ns == stamp
    assert cached_export(model, "onnx", (32, 96), 1) != first
    assert cached_export(make_model(6, 2, seed=9), "onnx", (64, 96), 1) != first


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
