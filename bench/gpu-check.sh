#!/usr/bin/env bash
# The GPU check, for a lent GPU host (the library's `device` tool), in two steps:
#   bench/gpu-check.sh --prepare   here (no GPU needed): builds the check binary and
#                                  the kernels' PTX cache into bench/gpu-check/ (a few
#                                  MiB, small enough to travel with the working tree)
#   bench/gpu-check.sh             on the GPU host: runs it, prints one table (with the
#                                  device tool, carry ["bench/gpu-check"]: it is ignored)
# What it checks today: the GPU probe, the kernels for the GPU present (the PTX cache
# made here for sm_75..sm_90, or its own NVRTC), kernel parity with the CPU reference
# for I420/NV12 × fp32/fp16 with time per launch. NVDEC, TensorRT and whole-pipeline figures join it as
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
    "$OUT/gpu_check" --prepare "$OUT/kernels"
    du -sh "$OUT"
    exit 0
fi
BIN="$OUT/gpu_check"
[ -x "$BIN" ] || { echo "run bench/gpu-check.sh --prepare first (here), then this (on the GPU host)" >&2; exit 2; }
echo "# GPU check, $(date -u +%FT%TZ), $(hostname)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
"$BIN" "$OUT/kernels"
