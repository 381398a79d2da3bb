#!/usr/bin/env bash
# Every check this package needs a GPU for, in one go, on a CUDA machine prepared as
# ../shared/tools/gpu/README.md says (the ROS 2 wheels in .whl/): the CUDA tests, the max-pool
# methods (benchmarks/cuda_maxpool.py), hydranet-bench --device cuda (engines at 640x480 and
# 1280x720, cameras batched, the node end to end), the node's host side on that machine's
# cores publishing serialized in place and as rclpy messages (benchmarks/gpu_node_host.py, a
# stand-in for the GPU; benchmarks/publish_probe.py, the publishing alone), the node's peak rate, and the CUDA graph comparison with a kernel profile.
# numba's wheels (the compiled labels of the host post-processing) can go in .whl/ beside the
# ROS ones, but llvmlite's alone is 60 MB, which takes .whl/ past the 64 MiB a device call
# carries; without them only the reference's host post-processing falls back to OpenCV (and
# says so once): the CUDA engine makes its outputs on the GPU.
#   pip download --only-binary=:all: --no-deps --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl numba llvmlite
#   bash benchmarks/gpu_check.sh OUT_DIR [quick]
# A device call runs at most 600 s, so the steps share BUDGET seconds (default 500, set-up
# included), most important first, each under its own cap; each step's output is written as
# it comes, and a step that no longer fits is skipped with a line saying so. All steps take
# about 830 s: STEPS names the ones to run, default "bench tests maxpool" (the acceptance
# figures and the tests), then a second call with STEPS="peak host standin graphs". The bench
# step's node runs take PIPELINE (default both) and PUBLISH_THREADS (comma-separated, default
# 1); CAMS and FRAMES shorten it.
# OUT gets at most 7 files (a device call brings back 8): steps.txt (machine, steps, warnings
# and errors of the bench runs), tests.txt, bench.txt, bench.json, host.txt, peak.txt,
# probes.txt (max-pool methods, graphs against eager, kernel profile).
set -uo pipefail
OUT=${1:-gpu_out}
QUICK=${2:-}
BUDGET=${BUDGET:-500}
DEVICE=${DEVICE:-cuda}  # cpu only to rehearse this script on a machine without a GPU
STEPS=" ${STEPS:-bench tests maxpool} "
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
[ -x /tmp/v/bin/python ] || bash .whl/on-gpu.sh 2>&1 | tail -1
PY=/tmp/v/bin/python

# step NAME CAP COMMAND...: if NAME is in STEPS, COMMAND under a timeout of at most CAP
# seconds or what is left of the budget
step() {
  local name=$1 cap=$2 limit
  shift 2
  [[ "$STEPS" == *" $name "* ]] || return 0
  limit=$(( BUDGET - SECONDS ))
  (( limit > cap )) && limit=$cap
  if (( limit < 15 )); then
    echo "gpu_check: $name skipped: $(( BUDGET - SECONDS )) s of the budget left" | tee -a "$OUT/steps.txt"
    return 0
  fi
  local begun=$SECONDS
  # SIGINT, not timeout's SIGTERM: pytest stopped by SIGINT still prints what passed, failed
  # and was skipped so far (stopped by SIGTERM it prints nothing), the commands say where
  timeout -s INT -k 15 "$limit" "$@"
  local rc=$?
  echo "gpu_check: $name rc=$rc in $(( SECONDS - begun )) s (limit $limit s)" | tee -a "$OUT/steps.txt"
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc
  df -h /dev/shm | tail -1; } 2>&1 | tee "$OUT/steps.txt"
if [ -z "$QUICK" ]; then
  SIZES=480x640,720x1280 RUNS=50 CAMS=${CAMS:-1,2,4,8,16} FRAMES=${FRAMES:-50} SECONDS_PER_RATE=4 RATES=30,60,90,120
else
  SIZES=480x640 RUNS=20 CAMS=8 FRAMES=30 SECONDS_PER_RATE=3 RATES=60
fi
BENCH=(/tmp/v/bin/hydranet-bench --device "$DEVICE" --delivery-rates '' --accuracy-frames 0
       --overwrite)

# the acceptance figures: engines, cameras, the node end to end (one frame at a time)
step bench 200 "${BENCH[@]}" --sizes $SIZES --runs $RUNS --cameras $CAMS \
    --node-frames $FRAMES --peak-rates '' --pipeline ${PIPELINE:-both} \
    --publish-threads ${PUBLISH_THREADS:-1} --out /tmp/gpu_check_bench \
    2>/tmp/gpu_check_bench.err | tee "$OUT/bench.txt"
cp /tmp/gpu_check_bench/bench.json "$OUT/" 2>/dev/null
# the files with CUDA-only tests first (frame graphs, engines, the measured precision), then
# those running the device-output and in-place publishing code beside ROS 2's wheels there
step tests 170 $PY -m pytest -q -p no:cacheprovider -rfs --tb=line test/test_frame_graph.py \
    test/test_engines.py test/test_fastest.py test/test_max_pool.py test/test_device_outputs.py \
    test/test_pipeline.py test/test_serialized.py \
    2>&1 | tail -40 | tee "$OUT/tests.txt"
# which max-pool method is fastest per shape, and what each buys the engine
[ "$DEVICE" = cpu ] || step maxpool 100 $PY benchmarks/cuda_maxpool.py --runs 30 2>&1 \
    | tee "$OUT/probes.txt"
# the node's peak rate, as a subscriber in another process sees it (pipelined, as 'auto' runs
# GPU engines; both settings did not fit in one run)
step peak 150 "${BENCH[@]}" --sizes 480x640 --runs 5 --cameras '' --node-frames 0 \
    --peak-rates $RATES --peak-seconds $SECONDS_PER_RATE --pipeline auto \
    --out /tmp/gpu_check_peak 2>/tmp/gpu_check_peak.err | tee "$OUT/peak.txt"
# the node's host side on this machine's cores, outputs serialized in place (from 1 and 2
# threads) against rclpy's messages, and the publishing alone (also from 2 and 4 threads and
# participants)
step standin 120 $PY benchmarks/gpu_node_host.py --runs 2 --frames 30 --in-place true,false \
    --publish-threads 1,2 \
    2>&1 | grep -v '^\[' | tee "$OUT/host.txt"
step host 60 $PY benchmarks/publish_probe.py --frames 30 --spread 2,4 2>&1 | grep -v '^\[' \
    | tee -a "$OUT/host.txt"
# the same with Fast DDS's asynchronous publication (a thread of its own sends to the
# transport): whether the consumer gets a frame sooner, not only the publisher done sooner
RMW_FASTRTPS_PUBLICATION_MODE=ASYNCHRONOUS step host 40 $PY benchmarks/publish_probe.py \
    --frames 30 --spread '' 2>&1 | grep -v '^\[' | sed 's/^/asynchronous: /' \
    | tee -a "$OUT/host.txt"
# eager against graphs per precision, and where a batch of 8 cameras spends its time
[ "$DEVICE" = cpu ] || step graphs 120 $PY benchmarks/cuda_graphs.py --runs 30 --profile \
    --out /tmp/gpu_check_graphs.json 2>&1 | tee -a "$OUT/probes.txt"
for err in /tmp/gpu_check_bench.err /tmp/gpu_check_peak.err; do
  [ -f "$err" ] && tr '\r' '\n' <"$err" | grep -ihE -A12 "error|warn|Traceback" | head -40 \
      | sed "s|^|$(basename "$err"): |" >>"$OUT/steps.txt"
done
echo "gpu_check: done in $SECONDS s of a $BUDGET s budget" | tee -a "$OUT/steps.txt"
