"""The hand-over of each image from rclpy's executor thread to the node's worker
(``latest.LatestSlots.put``), with the interpreter's lock yielded to the woken worker and
without, in turns.

    .venv/bin/python benchmarks/handover.py [--engine standin|openvino] [--rounds 4]
                                            [--frames 40]

Each round runs the node end to end twice (``node_benchmark.node_end_to_end``, as
``hydranet-bench`` does: the node alone in this process, camera and consumer in another, every
output subscribed, one frame at a time, 640x480, a seeded 40-class 3-task model), once with
``latest.HANDOVER_YIELDS`` at 3 (the node's) and once at 0 (no yield: the worker runs when
the executor thread next blocks), alternating which goes first. ``standin``: the stand-in GPU
of ``gpu_node_host.py`` (outputs as a CUDA engine returns them, published in place, pipelined);
``openvino``: a CPU engine (OpenVINO fp32). Prints per run the node's receipt to last publish,
its inference, the rest (the host side) and when the consumer had the point cloud and the last
output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
sys.path.insert(0, str(Path(__file__).parent))

import hydranet_ros.latest as latest  # noqa: E402
import hydranet_ros.predictor as predictor_module  # noqa: E402
from hydranet_ros.checkpoint import save_checkpoint  # noqa: E402
from hydranet_ros.cli.bench import machine  # noqa: E402
from hydranet_ros.memory import keep_freed_memory  # noqa: E402
from hydranet_ros.model import HydraNet  # noqa: E402
from hydranet_ros.ros.node_benchmark import node_end_to_end  # noqa: E402

YIELDS = (latest.HANDOVER_YIELDS, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="standin", choices=("standin", "openvino"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    keep_freed_memory()  # as hydranet_node does
    backend, params = "openvino", {}
    if args.engine == "standin":  # a CUDA engine's outputs, pipelined as 'auto' runs them
        from gpu_node_host import stand_in_engine
        predictor_module.create_engine = stand_in_engine
        backend, params = "torch", {"pipeline": "enabled"}
    torch.manual_seed(0)
    print(f"hand-over of each image to the worker, {args.engine} engine, 640x480, 40 classes, 3 "
          f"tasks, every output, {args.frames} frames per run, consumer in another process; "
          f"{machine()}")
    hosts: dict[int, list[float]] = {y: [] for y in YIELDS}
    with tempfile.TemporaryDirectory() as folder:
        os.environ["XDG_CACHE_HOME"] = folder  # exports of this run only
        checkpoint = Path(folder) / "seeded.ckpt"
        save_checkpoint(HydraNet(40, 3).eval(), checkpoint)
        for round_ in range(1, args.rounds + 1):
            for yields in (YIELDS if round_ % 2 else YIELDS[::-1]):
                latest.HANDOVER_YIELDS = yields
                result = node_end_to_end(checkpoint, backend, "fp32", (480, 640), args.frames,
                                         params=params)
                node = result["node_receipt_to_publish_ms"]["median"]
                inference = result["node_inference_ms"]["median"]
                hosts[yields].append(node - inference)
                cloud = result["consumer_send_to_reception_p50_ms_by_topic"]["points"]
                last = result["consumer_send_to_last_reception_ms"]["median"]
                print(f"round {round_}, yields {yields}: receipt to last publish {node:.1f} ms, "
                      f"inference {inference:.1f}, rest {node - inference:.1f}; consumer: "
                      f"cloud {cloud:.1f}, last output {last:.1f}", flush=True)
    for yields, values in hosts.items():
        print(f"yields {yields}: rest (receipt to last publish less inference) per round "
              f"{' / '.join(f'{v:.1f}' for v in values)} ms, "
              f"median {statistics.median(values):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
