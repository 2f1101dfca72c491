#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently: Debian packages, ONNX
# Runtime, the demo model and clip), then checks formatting and lints and runs every
# test. CI (.ci/run) runs exactly this.
#
# Every test binary runs even when one fails (`--no-fail-fast`), and the run ends with
# the names of the failing tests, so one failure never hides the rest. Performance is
# not judged here: the pipeline's regression guard is `bench/guard.sh` (a release
# build and a timed run, which a loaded machine must not turn into a red test run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test
scripts/fetch-assets.sh

echo "[test] cargo fmt --check" >&2
cargo fmt --all -- --check
echo "[test] cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings

# The GPU check's binary, which tests/gpu.rs runs on the fake CUDA and NVDEC libraries
# (`cargo test` builds examples only as test harnesses).
echo "[test] cargo build --example gpu_check" >&2
cargo build --example gpu_check --locked -q

echo "[test] cargo test --no-fail-fast" >&2
mkdir -p target
rm -f target/test-skips.log
status=0
cargo test --all-targets --locked --no-fail-fast 2>&1 | tee target/test-output.log || status=$?
if [ -s target/test-skips.log ]; then
    echo "[test] WARNING: some tests were SKIPPED for want of a fixture:" >&2
    sed 's/^/[test]   /' target/test-skips.log >&2
fi
if [ "$status" -ne 0 ]; then
    echo "[test] FAILED (cargo test exited $status). Failing tests:" >&2
    grep -E '^test .* \.\.\. FAILED$' target/test-output.log | sed -e 's/^test /[test]   /' -e 's/ \.\.\. FAILED$//' >&2 || true
    # Binaries that failed without a test line (a crash, a build error) name themselves
    # in cargo's closing list.
    sed -n '/^error: [0-9]* targets\? failed:/,$p' target/test-output.log | sed 's/^/[test] /' >&2 || true
    exit "$status"
fi
echo "[test] all tests passed" >&2
