#!/usr/bin/env bash
# The demo command: installs what the server needs (idempotently), builds it, and runs it
# on the embedded default config (CPU, local files under ./output). Extra arguments go to
# the server, e.g. `scripts/demo.sh --http 127.0.0.1:9090`. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

cargo build --release --locked
echo "[demo] serving http://127.0.0.1:8080/healthz and /metrics; Ctrl-C stops it" >&2
exec target/release/kvs-infer "$@"
