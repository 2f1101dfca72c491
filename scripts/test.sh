#!/usr/bin/env bash
# The test command: installs what the tests need (idempotently), then checks formatting
# and lints and runs every test. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "[test] cargo fmt --check" >&2
cargo fmt --all -- --check
echo "[test] cargo clippy --all-targets -- -D warnings" >&2
cargo clippy --all-targets --locked -- -D warnings
echo "[test] cargo test" >&2
cargo test --all-targets --locked
