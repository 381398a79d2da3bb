"""The host side of hydranet_node with a GPU engine, measured on a machine without a GPU.

    .venv/bin/python benchmarks/gpu_node_host.py [--gpu-ms 4.2] [--frames 30] [--runs 2]
                                                 [--pipeline enabled|disabled]
                                                 [--in-place true[,false]]
                                                 [--publish-threads 1,2]
                                                 [--handover-yields 3,0]

With a CUDA engine the node gets every output of a frame finished, in one transfer, and what
is left to it is the host's work: taking the image, decoding it, and building and publishing
ten messages (about 15 MB at 640x480). This runs the real node end to end as
``hydranet-bench`` does (``node_benchmark.node_end_to_end``: the node alone in this process,
camera and consumer in another, every output subscribed, one frame at a time, 40 classes and
3 tasks, seeded), with a stand-in for the GPU: the optimised torch engine with its
post-processing and outputs made by the device-output code (the CUDA path's own torch code,
run on the CPU), computed once per kind of frame and then handed back after ``--gpu-ms``
(default 4.2 ms: every node output of a 640x480 frame as CUDA graphs on an H200), pipelined
as ``pipeline: auto`` runs GPU engines unless ``--pipeline disabled``. The node's
receipt-to-last-publish less that wait is its host cost on this machine; the issue's goal for
the whole is 10 ms on an H100-class GPU. With several ``--in-place`` values or
``--publish-threads`` counts, each run measures each in turn (the node's ``publish_in_place``:
outputs published serialized in place from the buffer they came back in, or as rclpy
messages; ``publish_threads``: how many threads send them in place). ``--handover-yields
3,0`` compares the node's hand-over of each image to its worker (``latest.HANDOVER_YIELDS``:
how often ``LatestSlots.put`` yields the interpreter's lock to the woken worker) with none.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import hydranet_ros.latest as latest  # noqa: E402
import hydranet_ros.predictor as predictor_module  # noqa: E402
from hydranet_ros.checkpoint import save_checkpoint  # noqa: E402
from hydranet_ros.cli.bench import machine  # noqa: E402
from hydranet_ros.engines.torch_engine import TorchEngine  # noqa: E402
from hydranet_ros.memory import keep_freed_memory  # noqa: E402
from hydranet_ros.model import HydraNet  # noqa: E402
from hydranet_ros.ros.node_benchmark import node_end_to_end  # noqa: E402


class StandInGpu(TorchEngine):
    """Outputs as a CUDA engine returns them (made by the device-output code), each kind of
    frame computed once on the CPU, then returned after a fixed wait."""

    wait_s = 0.0042

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._made: dict = {}

    def outputs(self, images, net_size, wanted, settings, intrinsics):
        key = (tuple(i.shape for i in images), tuple(net_size), tuple(map(frozenset, wanted)),
               dataclasses.astuple(settings), tuple(intrinsics))
        if key not in self._made:
            self._made[key] = super().outputs(images, net_size, wanted, settings, intrinsics)
        time.sleep(self.wait_s)
        return [arrays.copy() for arrays in self._made[key]]  # FrameArrays, as CUDA's


def stand_in_engine(model, preset, backend, device, precision, log, warn, calibration):
    """``create_engine``'s signature; whatever the node asks for, the stand-in."""
    return StandInGpu(model, preset, torch.device("cpu"), device_postprocess=True, log=log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu-ms", type=float, default=4.2,
                        help="what the stand-in waits per frame, in place of the GPU")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--pipeline", default="enabled", choices=("enabled", "disabled"),
                        help="enabled: as 'auto' runs GPU engines")
    parser.add_argument("--in-place", default="true",
                        help="the node's publish_in_place, true and/or false, comma-separated "
                             "to compare in turns")
    parser.add_argument("--publish-threads", default="1",
                        help="the node's publish_threads (in place only), comma-separated to "
                             "compare in turns")
    parser.add_argument("--handover-yields", default=str(latest.HANDOVER_YIELDS),
                        help="latest.HANDOVER_YIELDS (0: the worker runs when the executor "
                             "thread next blocks), comma-separated to compare in turns")
    args = parser.parse_args()
    keep_freed_memory()  # as hydranet_node does
    StandInGpu.wait_s = args.gpu_ms / 1e3
    predictor_module.create_engine = stand_in_engine
    torch.manual_seed(0)
    print(f"hydranet_node with a stand-in GPU engine ({args.gpu_ms:g} ms per frame), 640x480, "
          f"40 classes, 3 tasks, every output, consumer in another process, {args.frames} "
          f"frames one at a time, pipeline {args.pipeline}; {machine()}")
    threads = [int(value) for value in args.publish_threads.split(",")]
    yields = [int(value) for value in args.handover_yields.split(",")]
    choices = [(in_place, count, handover) for value in args.in_place.split(",")
               for in_place in [value.strip().lower() == "true"]
               for count in (threads if in_place else [1]) for handover in yields]
    print(f"  {'run':>3}  {'in place':>8}  {'threads':>7}  {'yields':>6}  "
          f"{'receipt to last publish':>24}  "
          f"{'stand-in':>9}  {'host':>6}  {'consumer: last output':>22}  {'cloud':>6}  "
          f"{'navigation':>10}")
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "seeded.ckpt"
        save_checkpoint(HydraNet(40, 3).eval(), checkpoint)
        hosts: dict[tuple, list[float]] = {choice: [] for choice in choices}
        for run in range(1, args.runs + 1):
            for choice in choices:
                latest.HANDOVER_YIELDS = choice[2]
                result = node_end_to_end(checkpoint, "torch", "fp32", (480, 640), args.frames,
                                         params={"pipeline": args.pipeline,
                                                 "publish_in_place": choice[0],
                                                 "publish_threads": choice[1]})
                node = result["node_receipt_to_publish_ms"]
                inference = result["node_inference_ms"]["median"]
                hosts[choice].append(node["median"] - inference)
                by_topic = result["consumer_send_to_reception_p50_ms_by_topic"]
                print(f"  {run:>3}  {str(choice[0]).lower():>8}  {choice[1]:>7}  {choice[2]:>6}  "
                      f"{node['median']:>13.1f} (p90 {node['p90']:5.1f})"
                      f"  {inference:>9.1f}  {hosts[choice][-1]:>6.1f}  "
                      f"{result['consumer_send_to_last_reception_ms']['median']:>22.1f}  "
                      f"{by_topic['points']:>6.1f}  "
                      f"{result['consumer_send_to_navigation_inputs_ms']['median']:>10.1f}")
    for choice, values in hosts.items():
        print(f"host cost (receipt to last publish less the stand-in), publish_in_place "
              f"{str(choice[0]).lower()}, publish_threads {choice[1]}, handover yields "
              f"{choice[2]}, median of runs: {statistics.median(values):.1f} ms "
              f"({' / '.join(f'{value:.1f}' for value in values)})")
    print("consumer columns: ms from sending the image to receiving the last output, the "
          "point cloud, and the last of a navigation stack's inputs (mask, confidence and "
          "cloud; medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
