#!/usr/bin/env bash
# The GPU check, for a lent GPU host (the library's `device` tool), in two steps:
#   bench/gpu-check.sh --prepare   here (no GPU needed): builds the check binary and the
#                                  kernels' PTX into bench/gpu-check/ (a few MiB, small
#                                  enough to travel with the working tree)
#   bench/gpu-check.sh             on the GPU host: runs it, prints one table (with the
#                                  device tool, carry ["bench/gpu-check"]: it is ignored)
# What it checks today: the GPU probe, the kernels compiled for the GPU present (its
# NVRTC, or the PTX made here), kernel parity with the CPU reference for I420/NV12 ×
# fp32/fp16 with time per launch. NVDEC, TensorRT and whole-pipeline figures join it as
# those parts are built. Record the table in bench/README.md with the date and GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/gpu-check
if [ "${1:-}" = "--prepare" ]; then
    scripts/setup.sh --test >/dev/null
    cargo build --release --example gpu_check
    mkdir -p "$OUT"
    cp target/release/examples/gpu_check "$OUT/gpu_check"
    strip "$OUT/gpu_check" 2>/dev/null || true
    # PTX for the oldest target: the driver JIT-compiles it for any newer GPU.
    cargo run --quiet --release --example gpu_check_ptx -- compute_75 > "$OUT/preprocess.ptx"
    ls -la "$OUT"
    exit 0
fi
BIN="$OUT/gpu_check"
[ -x "$BIN" ] || BIN=target/release/examples/gpu_check
[ -x "$BIN" ] || { echo "run bench/gpu-check.sh --prepare first" >&2; exit 2; }
echo "# GPU check, $(date -u +%FT%TZ), $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
KVS_INFER_PTX="${KVS_INFER_PTX:-$OUT/preprocess.ptx}" "$BIN"
