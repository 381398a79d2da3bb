#!/usr/bin/env bash
# Every check this package needs a GPU for, in one go, on a CUDA machine prepared as
# ../shared/tools/gpu/README.md says (the ROS 2 wheels in .whl/): the CUDA tests,
# hydranet-bench --device cuda (engines at 640x480 and 1280x720, cameras batched, the node end
# to end, then its peak rate), and the CUDA graph comparison with a kernel profile.
# numba's wheels (the compiled labels of the host post-processing) can go in .whl/ beside the
# ROS ones, but llvmlite's alone is 60 MB, which takes .whl/ past the 64 MiB a device call
# carries; without them only the reference's host post-processing falls back to OpenCV (and
# says so once): the CUDA engine makes its outputs on the GPU.
#   pip download --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl numba llvmlite
#   bash benchmarks/gpu_check.sh OUT_DIR [quick]
# A device call runs at most 600 s, so the steps share BUDGET seconds (default 500, set-up
# included), most important first; each step's output is written as it comes, and a step
# that no longer fits is skipped with a line saying so. OUT gets at most 8 files (what a
# device call brings back): steps.txt (machine, steps), tests.txt, bench.txt, bench.json,
# peak.txt, cuda_graphs.txt, errors.txt.
set -uo pipefail
OUT=${1:-gpu_out}
QUICK=${2:-}
BUDGET=${BUDGET:-500}
DEVICE=${DEVICE:-cuda}  # cpu only to rehearse this script on a machine without a GPU
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
[ -x /tmp/v/bin/python ] || bash .whl/on-gpu.sh 2>&1 | tail -1
PY=/tmp/v/bin/python

# step NAME CAP RESERVE COMMAND...: COMMAND under a timeout of at most CAP seconds, leaving
# RESERVE seconds of the budget for the steps after it
step() {
  local name=$1 cap=$2 reserve=$3 limit
  shift 3
  limit=$(( BUDGET - SECONDS - reserve ))
  (( limit > cap )) && limit=$cap
  if (( limit < 15 )); then
    echo "gpu_check: $name skipped: $(( BUDGET - SECONDS )) s of the budget left" | tee -a "$OUT/steps.txt"
    return 0
  fi
  local begun=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "gpu_check: $name rc=$rc in $(( SECONDS - begun )) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  df -h /dev/shm | tail -1; } 2>&1 | tee "$OUT/steps.txt"
if [ -z "$QUICK" ]; then
  SIZES=480x640,720x1280 RUNS=50 CAMS=1,2,4,8,16 FRAMES=50 SECONDS_PER_RATE=4 RATES=30,60,90,120
else
  SIZES=480x640 RUNS=20 CAMS=8 FRAMES=30 SECONDS_PER_RATE=3 RATES=60
fi
BENCH=(/tmp/v/bin/hydranet-bench --device "$DEVICE" --delivery-rates '' --accuracy-frames 0
       --overwrite)

step tests 170 300 $PY -m pytest -q -p no:cacheprovider -rfs --tb=line test/test_frame_graph.py \
    test/test_engines.py test/test_device_outputs.py test/test_pipeline.py 2>&1 \
    | tail -40 | tee "$OUT/tests.txt"
# the acceptance figures: engines, cameras, the node end to end (one frame at a time)
step bench 200 110 "${BENCH[@]}" --sizes $SIZES --runs $RUNS --cameras $CAMS \
    --node-frames $FRAMES --peak-rates '' --pipeline both --out /tmp/gpu_check_bench \
    2>/tmp/gpu_check_bench.err | tee "$OUT/bench.txt"
cp /tmp/gpu_check_bench/bench.json "$OUT/" 2>/dev/null
# the node's peak rate, as a subscriber in another process sees it (pipelined, as 'auto' runs
# GPU engines; both settings did not fit in one run)
step peak 150 40 "${BENCH[@]}" --sizes 480x640 --runs 5 --cameras '' --node-frames 0 \
    --peak-rates $RATES --peak-seconds $SECONDS_PER_RATE --pipeline auto \
    --out /tmp/gpu_check_peak 2>/tmp/gpu_check_peak.err | tee "$OUT/peak.txt"
# eager against graphs per precision, and where a batch of 8 cameras spends its time
[ "$DEVICE" = cpu ] || step cuda_graphs 120 0 $PY benchmarks/cuda_graphs.py --runs 30 --profile \
    --out /tmp/gpu_check_graphs.json 2>&1 | tee "$OUT/cuda_graphs.txt"
tr '\r' '\n' </tmp/gpu_check_bench.err | grep -ihE -A12 "error|warn|Traceback" | head -40 \
    >"$OUT/errors.txt"
tr '\r' '\n' </tmp/gpu_check_peak.err | grep -ihE -A12 "error|warn|Traceback" | head -40 \
    >>"$OUT/errors.txt"
echo "gpu_check: done in $SECONDS s of a $BUDGET s budget" | tee -a "$OUT/steps.txt"
