#!/usr/bin/env bash
# The pipeline's regression guard, out of the test command: builds the release server
# and checks that the whole pipeline keeps at least MIN_RATIO (0.6) of the raw engine's
# throughput, both measured in the same run (a ratio, never an absolute time). A busy
# machine can starve one run, so it fails only when three runs in a row fall short.
#   bench/guard.sh            # after scripts/setup.sh and scripts/fetch-assets.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MIN_RATIO=${MIN_RATIO:-0.6}

cargo build --release --locked -q
for attempt in 1 2 3; do
    echo "[guard] kvs-infer bench --quick, attempt $attempt (pipeline ≥ $MIN_RATIO of the raw engine)" >&2
    if target/release/kvs-infer bench --quick --cameras 4 --seconds 4 --warmup 2 --min-ratio "$MIN_RATIO"; then
        exit 0
    fi
done
echo "[guard] the pipeline fell below $MIN_RATIO of the raw engine three times in a row" >&2
exit 1
