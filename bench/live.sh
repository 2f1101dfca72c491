#!/usr/bin/env bash
# Live-ingest benchmarks: glass-to-event latency over KVS HLS (fMP4, TS) versus GetMedia
# against the tests' fake KVS, and CPU per 1080p30 stream of demux (+ decode).
#   bench/live.sh [SECONDS]    (default 40 s of live video for the latency part)
# Writes bench/results/<date>-live.md as well as printing it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
scripts/fetch-assets.sh >/dev/null
out="bench/results/$(date -u +%F)-live.md"
{
    echo "# Live ingest, $(date -u +%FT%TZ)"
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB."
    echo "Command: bench/live.sh ${1:-40}"
    LIVE_BENCH_SEC="${1:-40}" cargo bench --quiet --bench live -- --bench 2>/dev/null | grep -v '^{' 
} | tee "$out"
