"""``hydranet-bench``: latency of every inference backend and precision at 640x480, 1226x370
and 1280x720 against the plain eager fp32 model, OpenVINO int8 as a share of bf16 (measured in
turns), multi-camera throughput, and the node end to end; a table on stdout, ``bench.json``
and a bar chart ``bench.png``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

from .. import weights as weights_mod
from ..benchmark import (SIZES, Row, accuracy_cost, bench_cameras, bench_engines, bench_image,
                         cases, format_accuracy, format_int8_share, format_pools, format_table,
                         int8_share, rows_as_dicts, write_chart)
from ..checkpoint import load_model, save_checkpoint
from ..engines import (auto_order, build_engine, default_precision, measured_precisions,
                       select_device)
from ..engines.quantize import SYNTHETIC
from ..errors import HydraNetError
from ..memory import keep_freed_memory
from ..model import HydraNet
from ..postprocess import PARTS
from ..predictor import choose_preset
from ..presets import Preset
from .common import description, listing, positive, run_main, whole_number
from .export import parse_size

PROG = "hydranet-bench"
#: The frame size of the multi-camera, node and delivery measurements (--node-size).
NODE_SIZE = (480, 640)


def thread_counts(text: str) -> list[int]:
    """``--publish-threads``: comma-separated counts of at least 1, at least one of them."""
    counts = listing(whole_number(1))(text)
    if not counts:
        raise argparse.ArgumentTypeError("expected counts such as 1,2, got none")
    return counts


def peak_rates(text: str) -> str | list[float]:
    """``--peak-rates``: 'auto' (chosen by the device), or comma-separated rates above 0."""
    return text if text == "auto" else listing(positive)(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=description(__doc__))
    parser.add_argument("--weights", help="checkpoint or preset name (default: a seeded "
                        "40-class, 3-task model; speed does not depend on the weights' values)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--sizes", default=",".join(f"{h}x{w}" for h, w in SIZES),
                        help="HEIGHTxWIDTH list, comma-separated")
    parser.add_argument("--runs", type=whole_number(1), default=10,
                        help="timed runs per case (slow cases stop earlier, after at least 3)")
    parser.add_argument("--cameras", type=listing(whole_number(1)), default="1,2,4",
                        help="camera counts for the batch throughput ('' to skip)")
    parser.add_argument("--node-size", default="480x640", help="HEIGHTxWIDTH of the frames "
                        "for the cameras, node and delivery measurements")
    parser.add_argument("--node-frames", type=whole_number(0), default=20,
                        help="frames through the node end to end (0 to skip)")
    parser.add_argument("--peak-rates", type=peak_rates, default="auto",
                        help="camera rates (Hz) at which the node's losses are measured, to "
                        "find its peak rate (the highest with under 5 %% of frames lost); "
                        "auto: 30,60,90,120,180 on CUDA, 2,5,10 on a CPU ('' to skip)")
    parser.add_argument("--peak-seconds", type=positive, default=5.0, help="seconds per rate")
    parser.add_argument("--pipeline", default="auto", choices=("auto", "enabled", "disabled",
                                                                "both"),
                        help="the node's pipeline parameter for the node measurements; both: "
                        "each measurement with it enabled and disabled")
    parser.add_argument("--publish-threads", type=thread_counts, default=[1],
                        help="the node's publish_threads for the node end to end, "
                        "comma-separated: one run per value (and pipeline setting)")
    parser.add_argument("--delivery-rates", type=listing(positive), default="2,5",
                        help="camera rates (Hz) for the delivery measurement: camera, node and "
                        "a subscriber as three processes ('' to skip)")
    parser.add_argument("--delivery-frames", type=whole_number(1), default=30,
                        help="frames the camera publishes per delivery rate")
    parser.add_argument("--accuracy-frames", type=whole_number(0), default=20,
                        help="held-out frames for the accuracy cost of each CPU precision, "
                        "with the bundled weights (0 to skip)")
    parser.add_argument("--out", type=Path, default=Path("bench_out"), help="folder for "
                        "bench.json and bench.png")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier results")
    return parser.parse_args(argv)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}, torch {torch.__version__}"


def load_or_seed(weights: str | None) -> HydraNet:
    if weights:
        return load_model(weights_mod.resolve(weights))
    torch.manual_seed(0)
    return HydraNet(40, 3).eval()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [parse_size(s, "--sizes") for s in args.sizes.split(",") if s]
    if not sizes:
        raise HydraNetError("--sizes: expected HEIGHTxWIDTH sizes such as 480x640, got none")
    node_size = parse_size(args.node_size, "--node-size")
    counts = args.cameras
    outputs = [args.out / "bench.json", args.out / "bench.png"]
    if any(p.exists() for p in outputs) and not args.overwrite:
        raise HydraNetError(f"refusing to overwrite results in {args.out} (use --overwrite)")
    keep_freed_memory()
    device = select_device(args.device)
    model = load_or_seed(args.weights)
    preset = choose_preset(args.weights or "", None, model, args.weights or "seeded model")
    started = time.perf_counter()
    title = f"HydraNet {model.num_classes} classes, {model.num_tasks} tasks on {machine()}"
    print(title, file=sys.stderr)

    def note(line: str) -> None:
        tqdm.write(f"{PROG}: {line}", file=sys.stderr)
    with tqdm(total=len(sizes) * len(cases(device)), unit="case", file=sys.stderr) as bar:
        rows = bench_engines(model, preset, device, sizes, runs=args.runs, progress=bar, warn=note)
    print(format_table(rows))
    if pools := format_pools(rows):
        print(f"\n{pools}")
    shares = int8_shares(rows, model, preset, sizes, note)
    if args.accuracy_frames > 0 and device.type == "cpu":
        selected = sorted({(r.backend, r.precision) for r in rows if r.backend == "openvino"})
        note(f"accuracy cost of each precision on {args.accuracy_frames} held-out frames")
        report_accuracy = accuracy_cost(selected, args.accuracy_frames)
        print(f"\naccuracy (bundled weights, {args.accuracy_frames} held-out frames of "
              f"{(args.accuracy_frames * 5 - 1) // 25 + 1} streets, 320x240, against the eager "
              f"fp32 model):\n" + format_accuracy(report_accuracy))
    else:
        report_accuracy = None
    candidates = [r for r in rows if r.size == f"{node_size[1]}x{node_size[0]}"] or rows
    best = min(candidates, key=lambda r: r.median_ms)
    if best.speedup == best.speedup:
        print(f"\nbest at {best.size}: {best.backend} {best.precision}, {best.median_ms:.1f} ms, "
              f"{best.speedup:.1f}x the eager fp32 model")
    auto = auto_choice(candidates, model, preset, device, node_size)
    print(auto)
    report = {"machine": machine(), "model": f"{model.num_classes} classes, {model.num_tasks} tasks",
              "engines": rows_as_dicts(rows), "auto": auto}
    if report_accuracy is not None:
        report["accuracy"] = report_accuracy
    if shares:
        report["int8_vs_bf16"] = shares
    if counts:
        engine = build_engine(model, preset, best.backend, device, best.precision,
                              calibration=SYNTHETIC)
        report["cameras"] = bench_cameras(engine, preset, node_size, counts)
        print(f"\ncameras batched ({best.backend} {best.precision}, {node_size[1]}x"
              f"{node_size[0]}, network and post-processing):")
        for c in report["cameras"]:
            print(f"  {c['cameras']} camera(s): {c['batch_ms']:.1f} ms per batch, "
                  f"{c['frames_per_s']:.1f} frames/s")
    rates = args.delivery_rates
    peak = args.peak_rates if args.peak_rates != "auto" else \
        ([30.0, 60.0, 90.0, 120.0, 180.0] if device.type == "cuda" else [2.0, 5.0, 10.0])
    pipelines = ["enabled", "disabled"] if args.pipeline == "both" else [args.pipeline]
    if args.node_frames > 0 or rates or peak:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = Path(tmp) / "bench.ckpt"
            save_checkpoint(model, checkpoint)
            # delivery and peak rate first: their subscriber must keep Fast DDS's defaults,
            # and the node benchmark below gives this process the large-data profile for good
            if rates:
                report["delivery"] = run_delivery_benchmark(checkpoint, best, str(device),
                                                            rates, args.delivery_frames,
                                                            node_size)
            if peak:
                report["node_peak"] = [run_peak_benchmark(checkpoint, best, str(device),
                                                          peak, args.peak_seconds,
                                                          node_size, pipeline)
                                       for pipeline in pipelines]
            if args.node_frames > 0:
                report["node"] = [run_node_benchmark(checkpoint, best, str(device),
                                                     args.node_frames, node_size, pipeline,
                                                     threads)
                                  for pipeline in pipelines for threads in args.publish_threads]
    args.out.mkdir(parents=True, exist_ok=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    outputs[0].write_text(json.dumps(report, indent=2) + "\n")
    chart = write_chart(rows, outputs[1], title)
    print(f"\nwrote {outputs[0]}" + (f" and {outputs[1]}" if chart else
                                      " (no chart: pip install matplotlib)")
          + f" in {report['seconds']:.0f} s", file=sys.stderr)
    return 0


def int8_shares(rows: list[Row], model: HydraNet, preset: Preset, sizes: list[tuple[int, int]],
                note) -> list[dict]:
    """int8 as a share of bf16 (OpenVINO) at each size where both ran, measured in turns."""
    shares = []
    for size in sizes:
        ran = {r.precision for r in rows
               if r.backend == "openvino" and r.size == f"{size[1]}x{size[0]}"}
        if {"int8", "bf16"} <= ran:
            note(f"int8 against bf16 at {size[1]}x{size[0]}, measured in turns")
            shares.append(int8_share(model, preset, size))
    if shares:
        print(f"\nopenvino int8 against bf16, measured in turns ({shares[0]['rounds']} rounds, "
              "medians):")
        for share in shares:
            print(format_int8_share(share))
    return shares


def auto_choice(rows: list[Row], model: HydraNet, preset: Preset, device: torch.device,
                size: tuple[int, int]) -> str:
    """What ``backend: auto`` runs on this device, and whether it is what measured fastest:
    where auto measures the precisions on its first frame (``engines/fastest.py``), it is
    built and given one frame of ``size``, as the node's first."""
    backend = auto_order(device)[0][0]
    measured = measured_precisions(backend, device)
    if measured:
        engine = build_engine(model, preset, backend, device)
        engine.predict([bench_image(size)], size, PARTS)
        precision = engine.precision
        picks = f"backend auto timed {backend} {', '.join(measured)} on its first frame " \
                f"({size[1]}x{size[0]}, {engine.ranked()}) and runs " \
                f"{backend} {precision}"
    else:
        precision = default_precision(backend, device)
        picks = f"backend auto picks {backend} {precision} on {device}"
    fastest = min(rows, key=lambda r: r.predict_ms)
    mine = [r for r in rows if (r.backend, r.precision) == (backend, precision)]
    verdict = "the fastest measured with post-processing" if mine and mine[0] is fastest else \
        f"fastest measured with post-processing: {fastest.backend} {fastest.precision} " \
        f"({fastest.predict_ms:.1f} ms)"
    measured_ms = f", {mine[0].predict_ms:.1f} ms with post-processing" if mine else ""
    return f"{picks}{measured_ms}: {verdict}"


def node_params(best: Row) -> dict:
    """The node's parameters for the measurements in other processes: the best engine, all
    depths published, int8 calibrated on held-out synthetic frames."""
    return {"precision": best.precision, "max_depth": 1000.0, "calibration_images": SYNTHETIC}


def run_node_benchmark(checkpoint: Path, best: Row, device: str, frames: int,
                       size: tuple[int, int] = NODE_SIZE, pipeline: str = "auto",
                       publish_threads: int = 1) -> dict | None:
    """The node end to end with the best backend on the benchmark's device, compared with
    that engine's latency."""
    try:
        from ..ros.node_benchmark import node_end_to_end
    except ImportError as exc:
        print(f"{PROG}: node end to end skipped: rclpy is not available ({exc})", file=sys.stderr)
        return None
    result = node_end_to_end(checkpoint, best.backend, best.precision, size, frames,
                             device=device, params={"pipeline": pipeline,
                                                    "publish_threads": publish_threads})
    node_ms = result["node_receipt_to_publish_ms"]["median"]
    result["engine_network_ms"] = best.median_ms
    result["engine_with_postprocessing_ms"] = best.predict_ms
    result["node_over_engine"] = round(node_ms / best.median_ms, 2)
    cloud_ms = result["consumer_send_to_reception_p50_ms_by_topic"].get("points")
    received = f", the point cloud received {cloud_ms:.1f} ms" if cloud_ms is not None else ""
    navigation = result["consumer_send_to_navigation_inputs_ms"]
    if navigation is not None:
        received += (f", a navigation stack's inputs (mask, confidence, cloud) all received "
                     f"{navigation['median']:.1f} ms")
    print(f"\nnode end to end, {size[1]}x{size[0]}, every output ({result['backend']}, "
          f"pipeline {pipeline}: {'pipelined' if result['pipelined'] else 'one stage'}, "
          f"publish_threads {publish_threads}, consumer in another process, one frame at a "
          f"time): receipt to last publish "
          f"{node_ms:.1f} ms median (p90 {result['node_receipt_to_publish_ms']['p90']:.1f}); "
          f"engine {best.median_ms:.1f} ms network, {best.predict_ms:.1f} ms with "
          f"post-processing; node = {result['node_over_engine']:.2f}x the network (its own "
          f"inference and outputs {result['node_inference_ms']['median']:.1f} ms); consumer: "
          f"image sent to last output received "
          f"{result['consumer_send_to_last_reception_ms']['median']:.1f} ms, in its callback "
          f"{result['consumer_send_to_last_callback_ms']['median']:.1f} ms" + received)
    return result


def run_peak_benchmark(checkpoint: Path, best: Row, device: str, rates: list[float],
                       seconds: float, size: tuple[int, int] = NODE_SIZE,
                       pipeline: str = "auto") -> dict | None:
    """The node's peak rate as a subscriber in another process sees it (camera, node and
    this process; under 5 % of frames lost)."""
    try:
        from ..ros.delivery_benchmark import format_peak, peak_rate
    except ImportError as exc:
        print(f"{PROG}: peak rate skipped: rclpy is not available ({exc})", file=sys.stderr)
        return None
    result = peak_rate(str(checkpoint), rates, seconds, size, best.backend, device,
                       node_params={**node_params(best), "pipeline": pipeline})
    result["pipeline"] = pipeline
    print(f"\npipeline {pipeline}: " + format_peak(result))
    return result


def run_delivery_benchmark(checkpoint: Path, best: Row, device: str, rates: list[float],
                           frames: int, size: tuple[int, int] = NODE_SIZE) -> list[dict] | None:
    """What a subscriber in another process receives: per output and reliability, the share
    of processed frames and the stamp-to-receipt latency (camera, node and this process)."""
    try:
        from ..ros.delivery_benchmark import format_delivery, measure_delivery
    except ImportError as exc:
        print(f"{PROG}: delivery skipped: rclpy is not available ({exc})", file=sys.stderr)
        return None
    runs = []
    print(f"\ndelivery to a subscriber in another process (synthetic camera {size[1]}x{size[0]}, "
          f"{best.backend} {best.precision}):")
    for rate in rates:
        run = measure_delivery(str(checkpoint), rate, frames, size, best.backend, device,
                               node_params=node_params(best))
        print(format_delivery(run))
        runs.append(run)
    return runs


def entry_point() -> None:
    sys.exit(run_main(main, prog=PROG))


if __name__ == "__main__":
    entry_point()
