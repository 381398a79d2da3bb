#!/usr/bin/env bash
# The main job: set up what is missing, then segment images with HydraNet and write label,
# depth and normal images plus a montage per image to demo_out/.
#   scripts/demo.sh IMAGE_OR_DIR...          official KITTI weights (downloaded once)
#   WEIGHTS=my.ckpt scripts/demo.sh IMAGE...  any checkpoint file or preset name
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
    echo "usage: scripts/demo.sh IMAGE_OR_DIR... (WEIGHTS=file-or-preset, default kitti)" >&2
    exit 2
fi
scripts/setup.sh
exec "${VENV:-.venv}/bin/hydranet-infer" "$@" --weights "${WEIGHTS:-kitti}" --out demo_out --overwrite
