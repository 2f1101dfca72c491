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
echo "[test] cargo test" >&2
mkdir -p target
rm -f target/test-skips.log
cargo test --all-targets --locked
if [ -s target/test-skips.log ]; then
    echo "[test] WARNING: some tests were SKIPPED for want of a fixture:" >&2
    sed 's/^/[test]   /' target/test-skips.log >&2
fi
