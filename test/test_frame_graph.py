"""Per-frame plans (engines/frame_graph.py): fixed buffers reused frame after frame, results
packed into one transfer, and on a GPU whole frames replayed as CUDA graphs that give what the
same work gives eagerly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import guard_model
from hydranet_ros.device_outputs import DeviceOutputs, layout_offsets, pack, unpack
from hydranet_ros.engines import build_engine
from hydranet_ros.engines.frame_graph import MAX_PLANS, FrameGraphs
from hydranet_ros.engines.torch_engine import TorchEngine
from hydranet_ros.evaluation import held_out_frame
from hydranet_ros.geometry import POINT_DTYPE, Intrinsics
from hydranet_ros.outputs import OUTPUTS, OutputSettings
from hydranet_ros.postprocess import CONFIDENCE, PARTS
from hydranet_ros.presets import get_preset
from hydranet_ros.synthetic.render import SyntheticWorld

CPU = torch.device("cpu")
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device on this machine")
ALL_PARTS = frozenset(PARTS + (CONFIDENCE,))
EVERY_OUTPUT = {spec.name for spec in OUTPUTS}


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Three held-out frames of different streets, 128x96."""
    world = SyntheticWorld(128, 96)
    return [held_out_frame(world, k).rgb for k in (2, 40, 77)]


@pytest.fixture(scope="module")
def model():
    return guard_model(40, 3)


def test_packed_frames_come_back_as_their_arrays():
    labels = torch.arange(12, dtype=torch.int32).reshape(3, 4) * 30  # > 256 classes: int32
    depth = torch.linspace(0.5, 9.0, 12).reshape(3, 4)
    cloud = torch.rand(3, 4, 5)
    results = [{"labels": labels, "depth": depth}, {"points": cloud, "depth": depth * 2}]
    packed, layouts = pack(results)
    assert packed.dtype == torch.uint8
    assert [size for layout in layouts for *_, size, _ in layout] == [48, 48, 240, 48]
    assert packed.numel() == layout_offsets([48, 48, 240, 48])[1]
    back = unpack(packed.numpy(), layouts)
    assert back[0]["labels"].dtype == np.uint16
    assert np.array_equal(back[0]["labels"], labels.numpy())
    assert np.array_equal(back[0]["depth"], depth.numpy())
    assert back[1]["points"].dtype == POINT_DTYPE and back[1]["points"].shape == (3, 4)
    assert np.array_equal(back[1]["points"]["z"], cloud[..., 2].numpy())
    assert np.array_equal(back[1]["depth"], depth.numpy() * 2)


def test_a_plan_is_reused_and_sees_each_new_frame(model, frames):
    """One plan for one kind of frame: its staging buffers take every new frame (A, B, A),
    and the results equal those of a fresh engine."""
    preset = get_preset("nyud_three")
    planned = TorchEngine(model, preset, CPU, optimize=False, device_postprocess=True)
    for image in (frames[0], frames[1], frames[0]):
        got = planned.predict([image], image.shape[:2], ALL_PARTS)[0]
        fresh = TorchEngine(model, preset, CPU, optimize=False, device_postprocess=True)
        want = fresh.predict([image], image.shape[:2], ALL_PARTS)[0]
        for name in ("labels", "depth", "normals", "confidence"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert len(planned.graphs._plans) == 1


def test_results_own_their_memory(model, frames):
    """A later frame through the same plan does not change earlier results."""
    preset = get_preset("nyud_three")
    engine = TorchEngine(model, preset, CPU, optimize=False, device_postprocess=True)
    first = engine.predict([frames[0]], frames[0].shape[:2], {"depth"})[0].depth.copy()
    kept = engine.predict([frames[0]], frames[0].shape[:2], {"depth"})[0]
    engine.predict([frames[1]], frames[1].shape[:2], {"depth"})
    assert np.array_equal(kept.depth, first)


def test_old_plans_are_dropped():
    graphs = FrameGraphs(CPU, capture=False)
    for size in range(1, MAX_PLANS + 4):
        image = np.full((size, 2, 3), size, dtype=np.uint8)
        out = graphs.run(("sum", size), [image],
                         lambda inputs: [{"x": inputs[0].sum(dtype=torch.int32).view(1)}])
        assert out[0]["x"][0] == size * size * 2 * 3
    assert len(graphs._plans) == MAX_PLANS


def test_which_outputs_can_be_captured():
    """Compact clouds vary in length and a per-frame depth range reads the depth back: those
    frames run eagerly; everything else has fixed shapes."""
    fixed_range = DeviceOutputs(get_preset("nyud_three"), CPU)
    assert fixed_range.preset.depth_range is not None
    assert fixed_range.fixed_shapes(OutputSettings(), EVERY_OUTPUT)
    assert not fixed_range.fixed_shapes(OutputSettings(pointcloud_organized=False), {"points"})
    assert fixed_range.fixed_shapes(OutputSettings(pointcloud_organized=False), {"labels"})
    per_frame = dataclasses.replace(get_preset("nyud_three"), depth_range=None)
    assert not DeviceOutputs(per_frame, CPU).fixed_shapes(OutputSettings(), {"depth_color"})


# -- on a GPU -------------------------------------------------------------------------------

def node_inputs(image: np.ndarray):
    height, width = image.shape[:2]
    intr = Intrinsics(0.8 * width, 0.8 * width, width / 2, height / 2, width, height)
    return [EVERY_OUTPUT], OutputSettings(max_depth=1000.0), [intr]


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_graphs_replay_what_eager_computes(model, frames, precision):
    """Every part and every node output of three frames (A, B, then A again through the same
    graph): the replayed graph equals the same engine's work run eagerly."""
    preset = get_preset("nyud_three")
    cuda = torch.device("cuda")
    graphed = TorchEngine(model, preset, cuda, precision)
    eager = TorchEngine(model, preset, cuda, precision, cuda_graphs=False)
    for image in (frames[0], frames[1], frames[0]):
        size = image.shape[:2]
        got, want = (e.predict([image], size, ALL_PARTS)[0] for e in (graphed, eager))
        assert (got.labels == want.labels).mean() >= 0.999
        assert np.allclose(got.depth, want.depth, rtol=1e-2, atol=1e-3)
        wanted, settings, intr = node_inputs(image)
        got_out, want_out = (e.outputs([image], size, wanted, settings, intr)[0]
                             for e in (graphed, eager))
        assert sorted(got_out) == sorted(want_out)
        assert (got_out["labels"] == want_out["labels"]).mean() >= 0.999
        assert got_out["points"].shape == size
        for out in (got_out, want_out):  # the flag made in the graph is the cloud's
            assert out.cloud_is_dense is (not np.isnan(out["points"]["z"]).any())
    assert graphed.graphs.captured() == 2 and eager.graphs.captured() == 0


@needs_cuda
def test_fp16_graphs_agree_with_the_reference(model, frames):
    """The acceptance guard on fp16, one of the precisions `auto` times on a GPU."""
    preset = get_preset("nyud_three")
    reference = build_engine(model, preset, "reference", CPU)
    engine = build_engine(model, preset, "torch", torch.device("cuda"), "fp16")
    assert engine.graphs.capture
    for image in frames:
        want = reference.predict([image], image.shape[:2], PARTS)[0]
        got = engine.predict([image], image.shape[:2], PARTS)[0]
        assert (got.labels == want.labels).mean() >= 0.995
        assert np.median(np.abs(got.depth - want.depth) / np.abs(want.depth)) <= 0.01
    assert engine.graphs.captured() == 1


@needs_cuda
def test_batches_of_cameras_replay_per_batch_size(model, frames):
    preset = get_preset("nyud_three")
    engine = build_engine(model, preset, "torch", torch.device("cuda"), "fp16")
    single = [engine.predict([image], image.shape[:2], PARTS)[0] for image in frames]
    batched = engine.predict(frames, frames[0].shape[:2], PARTS)
    for one, many in zip(single, batched):
        assert (one.labels == many.labels).mean() >= 0.995
    assert engine.graphs.captured() == 2


@needs_cuda
def test_a_failed_capture_runs_eagerly_and_says_so_once():
    """Work that reads a value back to the host cannot be captured: logged once, and the
    frames still come out right, eagerly."""
    lines: list[str] = []
    graphs = FrameGraphs(torch.device("cuda"), capture=True, log=lines.append)

    def syncing(inputs):
        scale = int(inputs[0].float().mean().item() > -1)  # a device-to-host read
        return [{"x": inputs[0] * scale}]
    for value in (3, 4):
        image = np.full((4, 4, 3), value, dtype=np.uint8)
        out = graphs.run(("sync", value), [image], syncing)
        assert (out[0]["x"] == value).all()
    assert len(lines) == 1 and "CUDA graph capture failed" in lines[0]
    assert graphs.captured() == 0
    ok = graphs.run("plain", [np.ones((2, 2, 3), np.uint8)], lambda i: [{"y": i[0] + 1}])
    assert (ok[0]["y"] == 2).all() and graphs.captured() == 1


def test_pack_keeps_the_order_of_the_outputs():
    packed, (layout,) = pack([{"b": torch.zeros(2, dtype=torch.uint8),
                               "a": torch.ones(1, dtype=torch.float32)}])
    assert [entry[0] for entry in layout] == ["b", "a"]
    offsets = [entry[-1] for entry in layout]
    assert offsets == layout_offsets([2, 4])[0] and offsets[0] < offsets[1]
    assert packed[offsets[0]:offsets[0] + 2].tolist() == [0, 0]
    assert packed[offsets[1]:offsets[1] + 4].view(torch.float32).tolist() == [1.0]
