#!/usr/bin/env bash
# Measures the AWS publishers against a local moto: events/s per sink and Kinesis calls
# per 1,000 events. Starts moto from .cache/venv (scripts/setup.sh --test installs it)
# on a free port, runs `kvs-infer bench --publishers`, stops moto.
# Usage: bench/publishers.sh [EVENTS] [extra kvs-infer bench args, e.g. --json FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-5000}
shift || true

scripts/setup.sh --test >/dev/null
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked -q
PORT=$(.cache/venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.cache/venv/bin/moto_server -H 127.0.0.1 -p "$PORT" >/dev/null 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    target/release/kvs-infer bench --publishers --create --endpoint "http://127.0.0.1:$PORT" --events "$EVENTS" "$@"
