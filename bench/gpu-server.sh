#!/usr/bin/env bash
# The release server for a lent GPU host, which has no FFmpeg and fetches nothing:
#   bench/gpu-server.sh --prepare      here: target/release/kvs-infer, stripped, and every
#                                      shared library it links but glibc's and libstdc++'s,
#                                      into bench/gpu-server/ (about 53 MiB)
#   bench/gpu-server.sh [ARGS…]        there (carry ["bench/gpu-server"], after a call
#                                      that ran bench/gpu-ort.sh --unpack): unpacks once
#                                      and runs kvs-infer ARGS with ONNX Runtime's GPU
#                                      build and the host's CUDA libraries
# e.g. bench/gpu-server.sh bench --backend cuda --decode nvdec --fps 5 …, or
# bench/paths.sh bench/gpu-server.sh CLIP MODEL.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$ROOT/bench/gpu-server
if [ "${1:-}" = "--prepare" ]; then
    cd "$ROOT"
    cargo build --release --bin kvs-infer
    rm -rf "$DIR" && mkdir -p "$DIR"
    libs=$(mktemp -d)
    trap 'rm -rf "$libs"' EXIT
    ldd target/release/kvs-infer | awk '/=> \// {print $3}' |
        grep -vE '/(libc|libm|libgcc_s|libstdc\+\+|libpthread|libdl|librt)\.so' |
        while read -r lib; do cp -L "$lib" "$libs/"; done
    tar -C "$libs" -cf - . | xz -T0 -6 >"$DIR/libs.tar.xz"
    strip -o "$libs/kvs-infer" target/release/kvs-infer
    xz -T0 -c "$libs/kvs-infer" >"$DIR/kvs-infer.xz"
    du -sh "$DIR"
    exit 0
fi
run=/tmp/kvs-infer-server
if [ ! -x "$run/kvs-infer" ]; then
    mkdir -p "$run/lib"
    tar -xJf "$DIR/libs.tar.xz" -C "$run/lib"
    xz -d -c "$DIR/kvs-infer.xz" >"$run/kvs-infer"
    chmod +x "$run/kvs-infer"
fi
. "$ROOT/bench/gpu-ort-env.sh"
use_ort_gpu
# The host's own libraries first; ours fill in what it lacks (FFmpeg and its codecs).
export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$run/lib"
exec "$run/kvs-infer" "$@"
