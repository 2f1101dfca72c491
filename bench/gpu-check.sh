#!/usr/bin/env bash
# The GPU check, for a lent GPU host (the library's `device` tool), in two steps:
#   bench/gpu-check.sh --prepare   here (no GPU needed): builds the check binary (it
#                                  links only libc), the kernels' cache (cubins
#                                  and PTX) for sm_75..sm_90, fragmented-MP4 clips (H.264 and H.265)
#                                  with libavcodec's decode of them as per-picture
#                                  hashes, and the YOLOv8n model, into bench/gpu-check/
#                                  (about 40 MiB: it travels with the working tree)
#   bench/gpu-check.sh             on the GPU host: runs it and prints the tables (with
#                                  the device tool, carry ["bench/gpu-check"]: ignored
#                                  by git, so it must be carried)
#   bench/gpu-check.sh --rehearse  here: the same run on the tests' fake CUDA and NVDEC
#                                  libraries, to see it work before spending GPU time
# For the engine rows, ONNX Runtime's GPU build travels in a call before the check's:
# bench/gpu-ort.sh.
# Tables: kernel parity with the CPU reference and µs per launch; one launch per batch
# against one per frame; the YOLO candidate kernel bit for bit against the CPU's, µs
# per batch and bytes back; NVDEC bit-exactness against libavcodec, NV12 surfaces into the
# kernel without a host copy, pictures/s with 1 and 8 sessions; TensorRT and CUDA
# engines against the CPU engine with images/s at batch 1/8/32, and the GPU path with
# the output brought back whole or kept on the device (where the host has a
# GPU build of ONNX Runtime at ORT_DYLIB_PATH, and TensorRT). Record the output in
# bench/README.md with the date and GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECK=bench/gpu-check
if [ "${1:-}" = "--prepare" ]; then
    scripts/setup.sh --test >/dev/null
    scripts/fetch-assets.sh >/dev/null
    cargo build --release --example gpu_check
    rm -rf "$CHECK" && mkdir -p "$CHECK/clips"
    cp target/release/examples/gpu_check "$CHECK/gpu_check"
    strip "$CHECK/gpu_check" 2>/dev/null || true
    "$CHECK/gpu_check" --prepare "$CHECK"
    src=../shared/fixtures/video/person-motorcycle-1080p30.mp4
    [ -f "$src" ] || src=.cache/demo/person-motorcycle-720p.mp4
    frag=(-movflags frag_keyframe+empty_moov+default_base_moof)
    ffmpeg -v error -y -i "$src" -an -c:v copy "${frag[@]}" "$CHECK/clips/h264.mp4"
    ffmpeg -v error -y -i "$src" -an -t 5 -c:v libx265 -preset ultrafast -x265-params log-level=error \
        -tag:v hvc1 "${frag[@]}" "$CHECK/clips/h265.mp4"
    for clip in "$CHECK"/clips/*.mp4; do
        size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$clip")
        ffmpeg -v error -i "$clip" -f rawvideo -pix_fmt yuv420p - |
            "$CHECK/gpu_check" --hash-frames "${size%x*}" "${size#*x}" "${clip%.mp4}.ref" "${clip%.mp4}.frame0.yuv"
    done
    model=../shared/fixtures/models/yolov8n-coco.onnx
    [ -f "$model" ] || model=.cache/demo/yolov8n-coco.onnx
    cp "$model" "$CHECK/yolov8n-coco.onnx"
    du -sh "$CHECK"
    exit 0
fi
BIN="$CHECK/gpu_check"
[ -x "$BIN" ] || { echo "run bench/gpu-check.sh --prepare first (here), then this (on the GPU host)" >&2; exit 2; }
if [ "${1:-}" = "--rehearse" ]; then
    # Here, before spending GPU time: the same run on the tests' fake CUDA driver and
    # fake NVDEC (our kernels on the CPU, libavcodec for decoding). Every section but
    # the engines' must pass; the figures mean nothing.
    fake=target/gpu-check-fake
    mkdir -p "$fake"
    cxx=(c++ -std=c++17 -O2 -ffp-contract=off -fPIC -shared -Ikernels)
    "${cxx[@]}" -o "$fake/libcuda.so" tests/support/fake_cuda.cpp
    "${cxx[@]}" -o "$fake/libnvcuvid.so" tests/support/fake_nvcuvid.cpp -lavcodec -lavutil
    export KVS_INFER_CUDA_DRIVER="$PWD/$fake/libcuda.so" KVS_INFER_NVCUVID="$PWD/$fake/libnvcuvid.so"
fi
# ONNX Runtime's GPU build, where bench/gpu-ort.sh --unpack put it (the CPU build in
# .cache has no GPU providers, and the engine rows say so).
. bench/gpu-ort-env.sh
use_ort_gpu
# The device tool returns only the last 12,000 characters of output; where it gives
# a folder to bring files back from ($OUT), the whole report goes there too.
report=/dev/null
[ -n "${OUT:-}" ] && [ -d "$OUT" ] && report="$OUT/gpu-check.md"
{
    echo "# GPU check, $(date -u +%FT%TZ), $(hostname)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
    "$BIN" "$CHECK"
} 2>&1 | tee "$report"
exit "${PIPESTATUS[0]}"
