#!/usr/bin/env bash
# The demo command: installs what the server needs (idempotently), fetches the demo
# model and clip, builds the server and runs it on the embedded default config: four
# cameras on the clip through YOLOv8n on the CPU, events and snapshots in ./output/.
# Extra arguments go to the server, e.g. `scripts/demo.sh --http 127.0.0.1:9090`.
# Stop it with Ctrl-C (a graceful shutdown that flushes every event).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/fetch-assets.sh

cargo build --release --locked
echo "[demo] serving http://127.0.0.1:8080/healthz, /readyz and /metrics; events in ./output/events.jsonl; Ctrl-C stops it" >&2
exec target/release/kvs-infer "$@"
