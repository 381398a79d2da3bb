#!/usr/bin/env bash
# Every check this package needs a GPU for, in one go, on a CUDA machine prepared as
# ../shared/tools/gpu/README.md says (the ROS 2 wheels in .whl/): the CUDA tests, the CUDA
# graph comparison, and hydranet-bench --device cuda with the node's latency and peak rate.
#   bash benchmarks/gpu_check.sh OUT_DIR
set -uo pipefail
OUT=${1:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
[ -x /tmp/v/bin/python ] || bash .whl/on-gpu.sh 2>&1 | tail -3
PY=/tmp/v/bin/python
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nproc >> "$OUT/gpu.txt"
timeout 240 $PY -m pytest -q -p no:cacheprovider -rs test/test_frame_graph.py test/test_engines.py \
    test/test_device_outputs.py test/test_pipeline.py 2>&1 | tail -25 | tee "$OUT/tests.txt"
timeout 120 $PY benchmarks/cuda_graphs.py --out "$OUT/cuda_graphs.json" 2>&1 | tee "$OUT/cuda_graphs.txt"
timeout 300 /tmp/v/bin/hydranet-bench --device cuda --sizes 480x640,720x1280 --runs 50 \
    --cameras 1,2,4,8,16 --node-frames 50 --peak-rates 30,60,90,120,180,240 --peak-seconds 4 \
    --pipeline both --delivery-rates '' --out "$OUT/bench" 2>"$OUT/bench_err.txt" | tee "$OUT/bench.txt"
tail -5 "$OUT/bench_err.txt"
