#!/usr/bin/env bash
# Runs `kvs-infer bench` per model size: YOLOv8n (real COCO weights, fetched) and
# YOLOv8s and m (the real architectures with random weights, made by
# scripts/make_yolov8.py with only the `onnx` package: same compute, meaningless
# detections). Results go to bench/results/<date>-<model>.{txt,json}.
# Usage: bench/models.sh [extra kvs-infer bench args, e.g. --seconds 8 --warmup 2]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh >/dev/null
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
for size in s m; do
    if [ ! -f "engines/yolov8$size-random.onnx" ]; then
        .cache/venv/bin/python scripts/make_yolov8.py "$size" "engines/yolov8$size-random.onnx"
    fi
done
date=$(date -u +%Y-%m-%d)
mkdir -p bench/results
for model in .cache/demo/yolov8n-coco.onnx engines/yolov8s-random.onnx engines/yolov8m-random.onnx; do
    name=$(basename "$model" .onnx)
    echo "== $name" >&2
    target/release/kvs-infer bench --model "$model" --json "bench/results/$date-$name.json" "$@" \
        | tee "bench/results/$date-$name.txt"
done
