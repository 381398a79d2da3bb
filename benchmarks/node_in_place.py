"""The node with a CPU engine end to end, its outputs published serialized in place
(``publish_in_place: true``, the default) against rclpy's messages, in turns.

    .venv/bin/python benchmarks/node_in_place.py [--rounds 4 --frames 30]
                                                 [--backend openvino --precision int8]

``node_benchmark.node_end_to_end`` as ``hydranet-bench`` runs it (640x480, a seeded
40-class, 3-task model, every output subscribed by a consumer in another process, one frame
at a time), each round once per setting, the order swapped every round. Per run, medians
(ms): the node's receipt to last publish, its inference (network, post-processing and the
outputs), the rest (mostly publishing), and when the consumer received the last output and
the point cloud after sending the image.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from hydranet_ros.checkpoint import save_checkpoint
from hydranet_ros.model import HydraNet
from hydranet_ros.presets import get_preset
from hydranet_ros.ros.node_benchmark import node_end_to_end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="int8")
    args = parser.parse_args()
    preset = get_preset("nyud_three")
    torch.manual_seed(0)
    model = HydraNet(preset.num_classes, preset.num_tasks).eval()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "seeded.ckpt"
        save_checkpoint(model, checkpoint)
        for round_ in range(args.rounds):
            for in_place in (True, False) if round_ % 2 == 0 else (False, True):
                r = node_end_to_end(checkpoint, args.backend, args.precision, (480, 640),
                                    args.frames, params={"publish_in_place": in_place})
                total = r["node_receipt_to_publish_ms"]["median"]
                inference = r["node_inference_ms"]["median"]
                print(f"round {round_ + 1}, {'in place' if in_place else 'rclpy   '}: receipt to "
                      f"last publish {total:.1f}, inference {inference:.1f}, rest "
                      f"{total - inference:.1f}; consumer: last output "
                      f"{r['consumer_send_to_last_reception_ms']['median']:.1f}, point cloud "
                      f"{r['consumer_send_to_reception_p50_ms_by_topic']['points']:.1f}, "
                      f"navigation inputs "
                      f"{r['consumer_send_to_navigation_inputs_ms']['median']:.1f}",
                      flush=True)


if __name__ == "__main__":
    main()
