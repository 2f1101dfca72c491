#!/usr/bin/env bash
# ONNX Runtime's GPU build for the engine rows of bench/gpu-check.sh on a lent GPU
# host, which fetches nothing and takes 64 MiB per call of the device tool:
#   bench/gpu-ort.sh --prepare [SM]  here: the onnxruntime-gpu wheel from PyPI (a CUDA
#                                    13 build: driver 580 or later), its libraries with
#                                    every cubin but sm_SM's zeroed (bench/fatbin_prune.py;
#                                    SM 90, an H100, by default) into
#                                    bench/gpu-ort/ort-gpu.tar.xz (58 MiB for sm_90)
#   bench/gpu-ort.sh --unpack        there (carry ["bench/gpu-ort"]): unpacks it into
#                                    /tmp/kvs-infer-ort-gpu
# It and the check (32 MiB) do not fit in one call, so one call unpacks and the next,
# within the 30 s a machine stays warm, runs bench/gpu-check.sh (carry
# ["bench/gpu-check"]), which uses /tmp/kvs-infer-ort-gpu when ORT_DYLIB_PATH is unset.
# The host's CUDA 13 runtime, cuBLAS and cuDNN 9 are used (the lent image has them).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.31.1
DIR=bench/gpu-ort
. bench/gpu-ort-env.sh
case "${1:-}" in
--prepare)
    sm=${2:-90}
    python=.cache/venv/bin/python
    [ -x "$python" ] || python=python3
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 -d "$tmp" "onnxruntime-gpu==$VERSION"
    (cd "$tmp" && unzip -q -o ./*.whl 'onnxruntime/capi/*.so*')
    lib="$tmp/onnxruntime/capi"
    mkdir -p "$tmp/out"
    cp "$lib/libonnxruntime.so.$VERSION" "$lib/libonnxruntime_providers_shared.so" "$tmp/out/"
    python3 bench/fatbin_prune.py "$lib/libonnxruntime_providers_cuda.so" \
        "$tmp/out/libonnxruntime_providers_cuda.so" "$sm"
    mkdir -p "$DIR"
    tar -C "$tmp/out" -cf - . | xz -T0 -6 >"$DIR/ort-gpu.tar.xz"
    du -sh "$DIR/ort-gpu.tar.xz"
    ;;
--unpack)
    mkdir -p "$ORT_GPU_DIR"
    tar -xJf "$DIR/ort-gpu.tar.xz" -C "$ORT_GPU_DIR"
    ls "$ORT_GPU_DIR"
    ;;
*)
    echo "usage: bench/gpu-ort.sh --prepare [SM] (here) | --unpack (on the GPU host)" >&2
    exit 2
    ;;
esac
