"""The max-pools that pick their fastest method per shape: every method gives the release's
5x5 pool bit for bit, the choice is the fastest measured, and neither a trace nor a CUDA graph
records the timing runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_model
from hydranet_ros.engines.max_pool import (METHODS, TIMED_ROUNDS, MaxPool, chosen_methods,
                                           max_pool, measured_max_pools)
from hydranet_ros.engines.torch_engine import TorchEngine, fold_batchnorm
from hydranet_ros.presets import get_preset

RELEASE_POOL = torch.nn.MaxPool2d(kernel_size=5, stride=1, padding=2)


def awkward_input(dtype: torch.dtype, layout: torch.memory_format) -> torch.Tensor:
    """Edges, NaN, both infinities and a channel of -inf (padding must not leak in)."""
    x = torch.randn(2, 8, 9, 13)
    x[0, 0, 0, 0], x[0, 1, 4, 6], x[1, 2, 8, 12] = float("nan"), float("-inf"), float("inf")
    x[1, 3] = float("-inf")
    return x.to(dtype).contiguous(memory_format=layout)


def assert_same(expected: torch.Tensor, got: torch.Tensor) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert torch.equal(expected.isnan(), got.isnan())
    assert torch.equal(expected.nan_to_num(0.0), got.nan_to_num(0.0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_every_method_is_the_release_pool(method, dtype, layout):
    x = awkward_input(dtype, layout)
    assert_same(RELEASE_POOL(x), max_pool(x, 5, 2, method))


@pytest.mark.parametrize("kernel, padding", [(3, 1), (5, 0), (7, 3)])
def test_other_square_pools(kernel, padding):
    x = awkward_input(torch.float32, torch.channels_last)
    pool = torch.nn.MaxPool2d(kernel, 1, padding)
    for method in METHODS:
        assert_same(pool(x), max_pool(x, kernel, padding, method))


def test_reduction_keeps_channels_last():
    """The next convolution must not get an NCHW tensor (a layout copy per pool)."""
    x = awkward_input(torch.float32, torch.channels_last)
    assert max_pool(x, 5, 2, "reduction").is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_keeps_an_nchw_layout(method):
    """The next convolution's kernel, and so its rounding, depends on the layout it gets: a
    pool that changed it changed the network's outputs (by 1e-5 on an AVX2 CPU)."""
    x = awkward_input(torch.float32, torch.contiguous_format)
    assert max_pool(x, 5, 2, method).is_contiguous()


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown max-pool method 'fast'"):
        max_pool(torch.zeros(1, 1, 4, 4), 5, 2, "fast")


def fake_timer(seconds: dict[str, float], calls: list[str]):
    """A timer that runs the call and reports the given time for its method (``MaxPool``
    times the methods in turns, in the order of ``METHODS``), noting each method it times."""
    order = iter(METHODS * 100)

    def timer(call, device):
        method = next(order)
        calls.append(method)
        call()
        return seconds[method]
    return timer


def test_each_shape_runs_its_fastest_method():
    calls: list[str] = []
    pool = MaxPool(RELEASE_POOL, timer=fake_timer(
        {"window": 3.0, "separable": 1.0, "reduction": 2.0}, calls))
    x = awkward_input(torch.float32, torch.channels_last)
    assert_same(RELEASE_POOL(x), pool(x))
    assert list(pool.chosen.values()) == ["separable"]
    assert calls == list(METHODS) * TIMED_ROUNDS  # in turns, for this shape
    pool(x)
    assert len(calls) == 3 * TIMED_ROUNDS  # and not again
    pool(x[:1])  # a new shape is timed on its own
    assert len(pool.chosen) == 2 and len(calls) == 6 * TIMED_ROUNDS


def test_a_burst_during_one_run_does_not_decide():
    """Each method's fastest run counts: one slow run (other work on the machine) of the
    fastest method does not hand the shape to a slower one."""
    times = iter([9.0, 2.0, 3.0] + [1.0, 2.0, 3.0] * (TIMED_ROUNDS - 1))
    pool = MaxPool(RELEASE_POOL, timer=lambda call, device: next(times))
    pool(awkward_input(torch.float32, torch.channels_last))
    assert list(pool.chosen.values()) == ["window"]


def test_a_trace_records_only_the_chosen_method():
    calls: list[str] = []
    pool = MaxPool(RELEASE_POOL, timer=fake_timer(
        {"window": 3.0, "separable": 2.0, "reduction": 1.0}, calls))
    x = awkward_input(torch.float32, torch.channels_last)
    with torch.inference_mode():
        pool(x)
        traced = torch.jit.trace(pool, x)
        assert len(calls) == 3 * TIMED_ROUNDS  # tracing timed nothing
        graph = str(traced.graph)
        assert "amax" in graph and "max_pool2d" not in graph
        # a shape first met while tracing runs the first method, untimed
        fresh = MaxPool(RELEASE_POOL, timer=fake_timer({}, calls))
        assert "max_pool2d" in str(torch.jit.trace(fresh, x, check_trace=False).graph)
        assert fresh.chosen == {} and len(calls) == 3 * TIMED_ROUNDS
        assert_same(RELEASE_POOL(x), traced(x))


def test_the_network_with_measured_pools_is_the_same_network():
    model = make_model(40, 3, seed=5)
    measured = measured_max_pools(fold_batchnorm(model))
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in measured.modules())
    assert sum(isinstance(m, MaxPool) for m in measured.modules()) == 4  # the CRPs
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(fold_batchnorm(model)(x), measured(x)):
            assert torch.equal(a, b)
    assert sum(chosen_methods(measured).values()) == 4  # one shape per CRP's pool
    # only square, stride-1 pools are taken
    other = torch.nn.Sequential(torch.nn.MaxPool2d(3, stride=2), torch.nn.MaxPool2d((3, 5), 1),
                                torch.nn.MaxPool2d(3, 1, 1, return_indices=True))
    assert all(isinstance(m, torch.nn.MaxPool2d) for m in measured_max_pools(other)[:])


def test_the_cpu_engine_times_its_pools_before_tracing():
    """The traced CPU network runs the measured methods, with the reference's outputs."""
    model = make_model(6, 2, seed=3)
    preset = get_preset("kitti")
    engine = TorchEngine(model, preset, torch.device("cpu"))
    reference = TorchEngine(model, preset, torch.device("cpu"), optimize=False)
    batch = np.random.default_rng(0).integers(0, 256, (1, 48, 64, 3), dtype=np.uint8)
    got, expected = engine.infer(batch), reference.infer(batch)
    chosen = chosen_methods(engine.model)
    assert sum(chosen.values()) == 4
    graph = str(next(iter(engine._traced.values())).graph)
    assert ("amax" in graph) == ("reduction" in chosen)
    assert ("max_pool2d" in graph) == bool({"window", "separable"} & set(chosen))
    for a, b in zip(got, expected):
        assert np.abs(a - b).max() <= 1e-3 * max(1.0, np.abs(b).max())
