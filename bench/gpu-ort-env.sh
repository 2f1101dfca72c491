# Sourced by bench/gpu-ort.sh, gpu-check.sh and gpu-server.sh: where bench/gpu-ort.sh
# --unpack puts ONNX Runtime's GPU build, and `use_ort_gpu`, which points the server at
# it (unless ORT_DYLIB_PATH already names one) with the CUDA 13 runtime, cuBLAS and
# cuDNN its CUDA provider loads, from wherever the host keeps them.
ORT_GPU_DIR=/tmp/kvs-infer-ort-gpu

use_ort_gpu() {
    local ort=("$ORT_GPU_DIR"/libonnxruntime.so.*) lib found
    [ -z "${ORT_DYLIB_PATH:-}" ] && [ -f "${ort[0]}" ] || return 0
    export ORT_DYLIB_PATH="${ort[0]}"
    for lib in libcudart.so.13 libcublas.so.13 libcudnn.so.9; do
        found=$(find /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu /opt -name "$lib" 2>/dev/null | head -1 || true)
        [ -n "$found" ] && LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    export LD_LIBRARY_PATH
}
