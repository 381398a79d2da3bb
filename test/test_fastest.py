"""Precision ``auto`` on a GPU (``engines/fastest.py``): every candidate timed on the first
call, the fastest serving it and every later call, the others released; failures skipped."""

from __future__ import annotations

import gc
import time
import weakref

import numpy as np
import pytest
import torch

from conftest import import_or_skip, make_model
from hydranet_ros.engines import build_engine, create_engine, measured_precisions
from hydranet_ros.engines.base import Engine
from hydranet_ros.engines.fastest import ROUNDS, WARMUP_CALLS, FastestEngine
from hydranet_ros.engines.torch_engine import TorchEngine
from hydranet_ros.postprocess import PARTS
from hydranet_ros.presets import get_preset

CPU = torch.device("cpu")
CUDA = torch.cuda.is_available()
PRESET = get_preset("kitti")


class Sleeper(Engine):
    """An engine whose every call takes ``delay`` seconds and says who answered."""

    backend = "fake"
    device = "cpu"

    def __init__(self, precision: str, delay: float, fail: bool = False) -> None:
        super().__init__(PRESET, 6, 2)
        self.precision = precision
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.model = f"model of {precision}"

    def infer(self, batch):
        self.calls += 1
        if self.fail:
            raise RuntimeError(f"{self.precision} cannot run this\nsecond line")
        time.sleep(self.delay)
        return (np.full(1, self.calls), self.precision)

    def predict(self, images, net_size, parts):
        return [self.infer(None)[1]]

    def outputs(self, images, net_size, wanted, settings, intrinsics):
        return [{"who": self.infer(None)[1]}]


def test_the_fastest_candidate_serves_the_first_call_and_every_later_one():
    slow, fast = Sleeper("fp16", 0.012), Sleeper("fp32", 0.001)
    lines: list[str] = []
    engine = FastestEngine([slow, fast], log=lines.append)
    assert engine.precision == "auto" and engine.chosen is None
    assert "precision measured on the first frame (fp16, fp32)" in engine.describe()

    assert engine.predict([None], (4, 4), PARTS) == ["fp32"]
    assert engine.chosen is fast and engine.precision == "fp32"
    assert slow.calls == WARMUP_CALLS + ROUNDS  # timed, then left alone
    assert fast.calls == WARMUP_CALLS + ROUNDS + 1  # and it answered the call itself
    assert engine.candidates == [fast]  # the slower one is released
    assert engine.timings["fake fp32"] < engine.timings["fake fp16"]
    assert len(lines) == 1 and lines[0].startswith("inference precision: fake fp32 on cpu")
    assert lines[0].index("fake fp32") < lines[0].index("fake fp16")  # fastest first
    assert "fake fp32 on cpu (measured fastest on the first frame: fake fp32" in engine.describe()

    assert engine.outputs([None], (4, 4), [set()], None, [None]) == [{"who": "fp32"}]
    assert engine.infer(np.zeros((1, 4, 4, 3), np.uint8))[1] == "fp32"
    assert slow.calls == WARMUP_CALLS + ROUNDS
    assert engine.model == "model of fp32"  # other attributes are the chosen engine's


def test_the_choice_follows_the_measurement_not_the_order():
    engine = FastestEngine([Sleeper("fp32", 0.001), Sleeper("fp16", 0.012)])
    engine.outputs([None], (4, 4), [set()], None, [None])
    assert engine.precision == "fp32"


def test_a_candidate_that_fails_is_left_out_with_one_warning_line():
    broken, working = Sleeper("bf16", 0.0, fail=True), Sleeper("fp16", 0.001)
    warnings: list[str] = []
    engine = FastestEngine([broken, working], log=lambda _: None, warn=warnings.append)
    assert engine.predict([None], (4, 4), PARTS) == ["fp16"]
    assert broken.calls == 1  # its first warm-up call failed: never called again
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert warnings[0].startswith("fake bf16 on cpu not used: it failed on the first frame: "
                                  "RuntimeError: bf16 cannot run this")
    assert set(engine.timings) == {"fake fp16"}


def test_candidates_left_out_are_freed_at_once_though_they_refer_to_themselves():
    """A torch engine and its frame plans refer to each other, so an engine let go is only
    freed by the garbage collector, with its weights and CUDA graph pools; the candidates not
    kept (slower, or failed: the kept error's frames would hold the engine) must be gone when
    the choice is made, however long the collector would have waited."""
    slow, broken, fast = Sleeper("fp16", 0.005), Sleeper("bf16", 0.0, fail=True), \
        Sleeper("fp32", 0.001)
    for engine in (slow, broken, fast):
        engine.plans = {"plan": lambda engine=engine: engine}  # a cycle, as a torch engine's
    gone = [weakref.ref(slow), weakref.ref(broken)]
    chooser = FastestEngine([slow, broken, fast], warn=lambda _: None)
    del slow, broken, engine
    gc.disable()
    try:
        assert chooser.predict([None], (4, 4), PARTS) == ["fp32"]
        assert [ref() for ref in gone] == [None, None]
    finally:
        gc.enable()
    assert chooser.chosen is fast


def test_create_engine_passes_its_warnings_to_the_measurement(monkeypatch):
    """Where engines are created (the node, the commands), a precision that fails on the
    first frame is a warning, not an info line."""
    import hydranet_ros.engines as engines
    monkeypatch.setattr(engines, "measured_precisions", lambda backend, device: ("bf16", "fp32"))
    built = iter([Sleeper("bf16", 0.0, fail=True), Sleeper("fp32", 0.001)])
    monkeypatch.setattr(engines, "TorchEngine", lambda *args, **kwargs: next(built))
    logs: list[str] = []
    warnings: list[str] = []
    engine = create_engine(make_model(6, 2), PRESET, "torch", "cpu", log=logs.append,
                           warn=warnings.append)
    assert engine.predict([None], (4, 4), PARTS) == ["fp32"]
    assert len(warnings) == 1 and warnings[0].startswith("fake bf16 on cpu not used"), warnings
    assert not any("not used" in line for line in logs), logs


def test_when_every_candidate_fails_the_first_error_is_raised():
    engine = FastestEngine([Sleeper("fp16", 0.0, fail=True), Sleeper("bf16", 0.0, fail=True)],
                           warn=lambda _: None)
    with pytest.raises(RuntimeError, match="fp16 cannot run this"):
        engine.predict([None], (4, 4), PARTS)
    assert engine.chosen is None


def test_real_engines_the_optimised_one_wins_and_its_results_come_back():
    """The reference (eager, unfolded) against the optimised CPU engine (folded, traced:
    several times faster here): the measurement picks the optimised one, and what the call
    returns is that engine's own result."""
    model = make_model(6, 2, seed=3)
    reference = build_engine(model, PRESET, "reference", CPU)
    optimised = TorchEngine(model, PRESET, CPU, "fp32")
    engine = FastestEngine([reference, optimised], rounds=9)  # 3x apart: medians of 9
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    got = engine.predict([image], (120, 160), PARTS)[0]
    assert engine.chosen is optimised, engine.timings
    want = optimised.predict([image], (120, 160), PARTS)[0]
    assert np.array_equal(got.labels, want.labels) and np.array_equal(got.depth, want.depth)


def test_on_a_cpu_precision_auto_is_not_measured():
    """PyTorch on the CPU is as before: one engine in fp32, nothing timed."""
    assert measured_precisions("torch", CPU) == ()
    engine = build_engine(make_model(6, 2), PRESET, "torch", CPU)
    assert isinstance(engine, TorchEngine) and engine.precision == "fp32"


def test_openvino_auto_times_bf16_and_fp32_where_the_cpu_has_bf16(tmp_path, monkeypatch):
    """bf16 was slower than fp32 on a Xeon VM with AVX512-BF16 and no AMX, so where OpenVINO
    reports bf16 both are timed on the first frame; elsewhere fp32 runs, nothing timed."""
    import_or_skip("openvino", "openvino is not installed (pip install -e .[engines])")
    from hydranet_ros.engines.openvino_engine import OpenVINOEngine, cpu_supports_bf16
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lines: list[str] = []
    engine = build_engine(make_model(6, 2), PRESET, "openvino", CPU, log=lines.append)
    if not cpu_supports_bf16():
        assert measured_precisions("openvino", CPU) == ()
        assert isinstance(engine, OpenVINOEngine) and engine.precision == "fp32"
        return
    assert measured_precisions("openvino", CPU) == ("bf16", "fp32")
    assert isinstance(engine, FastestEngine) and engine.rounds == 3
    assert [(c.backend, c.precision) for c in engine.candidates] == [("openvino", "bf16"),
                                                                      ("openvino", "fp32")]
    image = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    got = engine.predict([image], (96, 128), PARTS)[0]
    assert set(engine.timings) == {"openvino bf16", "openvino fp32"}
    assert engine.precision == min(engine.timings, key=engine.timings.get).split()[1]
    assert len(engine.candidates) == 1 and got.labels.shape == (96, 128)
    assert any(line.startswith("inference precision: openvino ") for line in lines), lines


@pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
def test_on_a_gpu_auto_times_every_precision_and_keeps_one():
    lines: list[str] = []
    engine = create_engine(make_model(6, 2), PRESET, "auto", "cuda", log=lines.append)
    assert isinstance(engine, FastestEngine)
    assert [c.precision for c in engine.candidates] == list(measured_precisions("torch",
                                                                                torch.device("cuda")))
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    prediction = engine.predict([image], (240, 320), PARTS)[0]
    assert engine.precision in ("fp16", "bf16", "fp32") and len(engine.candidates) == 1
    assert prediction.labels.shape == (240, 320)
    assert set(engine.timings) == {f"torch {p}" for p in measured_precisions("torch",
                                                                               torch.device("cuda"))}
    assert any(line.startswith("inference precision: torch ") for line in lines)
    assert engine.graphs.captured() == 1  # the chosen engine's plan replays its graph
