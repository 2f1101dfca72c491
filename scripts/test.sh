#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently: Debian packages, ONNX
# Runtime, the demo model and clip), then checks formatting and lints and runs every
# test. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
scripts/fetch-assets.sh

echo "[test] cargo fmt --check" >&2
cargo fmt --all -- --check
echo "[test] cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
# A regression guard on the pipeline's overhead, measured as a ratio to the raw engine
# in the same run (never an absolute time), failing only on a large regression.
echo "[test] kvs-infer bench --quick (pipeline ≥ 60% of the raw engine)" >&2
cargo build --release --locked -q
target/release/kvs-infer bench --quick --cameras 4 --seconds 4 --warmup 2 --min-ratio 0.6

# The GPU check's binary, which tests/gpu.rs runs on the fake CUDA and NVDEC libraries
# (`cargo test` builds examples only as test harnesses).
echo "[test] cargo build --example gpu_check" >&2
cargo build --example gpu_check --locked -q

echo "[test] cargo test" >&2
mkdir -p target
rm -f target/test-skips.log
cargo test --all-targets --locked
if [ -s target/test-skips.log ]; then
    echo "[test] WARNING: some tests were SKIPPED for want of a fixture:" >&2
    sed 's/^/[test]   /' target/test-skips.log >&2
fi
