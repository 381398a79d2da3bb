#!/usr/bin/env bash
# Every check this package needs a GPU for, in one go, on a CUDA machine prepared as
# ../shared/tools/gpu/README.md says (the ROS 2 wheels in .whl/): the CUDA tests, the CUDA
# graph comparison, and hydranet-bench --device cuda with the node's latency and peak rate.
# For the compiled labels on that machine, add numba's wheels to .whl/ beside the ROS ones
# (without them the host post-processing falls back to OpenCV and says so once):
#   pip download --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl numba llvmlite
#   bash benchmarks/gpu_check.sh OUT_DIR [quick]
set -uo pipefail
OUT=${1:-gpu_out}
QUICK=${2:-}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
[ -x /tmp/v/bin/python ] || bash .whl/on-gpu.sh 2>&1 | tail -1
PY=/tmp/v/bin/python
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  df -h /dev/shm | tail -1; } | tee "$OUT/gpu.txt"
timeout 200 $PY -m pytest -q -p no:cacheprovider -rfs --tb=line test/test_frame_graph.py \
    test/test_engines.py test/test_device_outputs.py test/test_pipeline.py 2>&1 | grep -v "^SKIPPED" \
    | tail -30 | tee "$OUT/tests.txt"
if [ -z "$QUICK" ]; then
  timeout 120 $PY benchmarks/cuda_graphs.py --out "$OUT/cuda_graphs.json" 2>&1 | tee "$OUT/cuda_graphs.txt"
  SIZES=480x640,720x1280 RUNS=50 CAMS=1,2,4,8,16 FRAMES=50 SECONDS=4
else
  SIZES=480x640 RUNS=20 CAMS=8 FRAMES=30 SECONDS=3
fi
timeout 300 /tmp/v/bin/hydranet-bench --device cuda --sizes $SIZES --runs $RUNS \
    --cameras $CAMS --node-frames $FRAMES --peak-rates 30,60,90,120,180 --peak-seconds $SECONDS \
    --pipeline both --delivery-rates '' --out "$OUT/bench" 2>"$OUT/bench_err.txt" | tee "$OUT/bench.txt"
grep -iE "error|warn|Traceback" "$OUT/bench_err.txt" | head -5
