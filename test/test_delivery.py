"""Large outputs reach a best-effort subscriber in another process: camera, node and this
test's subscriber as three processes, over real DDS, the subscriber with Fast DDS's defaults
and the QoS of Nav2's semantic segmentation layer (best effort, keep last 50)."""

from __future__ import annotations

import os


from conftest import import_or_skip

import_or_skip("rclpy", "rclpy is not installed (pip install -e .[ros])")

from hydranet_ros.ros.delivery_benchmark import measure_delivery  # noqa: E402
from hydranet_ros.ros.transport import PROFILE_VARIABLES  # noqa: E402

#: The camera renders a 640x480 frame in about 0.15 s of one core and the node needs about as
#: long on the other; 2 Hz leaves this 2-core machine room for the subscriber.
RATE_HZ = 2.0
FRAMES = 40
#: Frames the node must process for the shares to mean something. The first frames can go
#: before the camera and the node have met and while the node's first frame waits for its
#: one-time export: in a full run on a 2-core AMD EPYC (AVX2), 11 of 20 frames (5.5 s) went
#: that way (the export began 3.4 s after the camera's first frame). On the 2-core Xeon with
#: bf16, precision auto exports and times bf16 and fp32 on the first frame: 11.0 s in one
#: fresh-clone CI run, which left 9 of 30 frames processed. 40 frames leave 10 processed
#: frames after up to 15 s of that.
MIN_PROCESSED = 10
MIN_SHARE = 0.9
#: What the semantic segmentation layer subscribes to, and its QoS depth.
LAYER_OUTPUTS = ("labels", "confidence", "points")
LAYER_DEPTH = 50


def test_best_effort_subscriber_gets_what_a_navigation_stack_needs(ros, tmp_path):
    # the subscriber (this process) keeps Fast DDS's defaults: it needs nothing special
    assert not any(os.environ.get(v) for v in PROFILE_VARIABLES)
    run = measure_delivery("synthetic", RATE_HZ, FRAMES, (480, 640), backend="auto",
                           outputs=LAYER_OUTPUTS + ("depth",), reliabilities=("best_effort",),
                           qos_depth=LAYER_DEPTH, node_params={"pointcloud_organized": True},
                           logs=tmp_path)
    node_log = (tmp_path / "hydranet_node.log").read_text()
    assert "DDS transport: Fast DDS, shared memory" in node_log
    assert "Error" not in node_log  # Fast DDS reports a bad XML profile as an error
    assert "[WARN]" not in node_log  # nothing to warn about on a healthy start
    processed = run["frames_processed"]
    assert processed >= MIN_PROCESSED, run
    for topic in ("points", "depth/image", "segmentation/labels", "segmentation/confidence"):
        assert run["outputs"][topic]["best_effort"]["share"] >= MIN_SHARE, (topic, run)
    # the layer pairs mask, confidence and cloud by stamp: they arrive for the same frames
    assert run["frames_with_every_output"]["best_effort"] >= MIN_SHARE * processed, run
