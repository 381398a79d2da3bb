#!/usr/bin/env bash
# Set up what is missing, then run the whole test suite in one pytest process (extra
# arguments go to pytest). One process on purpose: what one test's libraries leave behind
# reaches the next, as it would in a long-running node (a late SIGSEGV found so was
# OpenVINO's, see hydranet_ros/engines/openvino_runtime.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
