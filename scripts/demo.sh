#!/usr/bin/env bash
# The main job: set up what is missing, then run synthetic camera -> hydranet_node ->
# evaluator over real ROS 2 topics on 50 held-out frames, print speed and accuracy, and
# write demo_out/ (metrics.json, a montage per sampled frame, demo.gif).
# Extra arguments go to hydranet-demo (see hydranet-demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${VENV:-.venv}/bin/hydranet-demo" --overwrite "$@"
