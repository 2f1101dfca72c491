#!/usr/bin/env bash
# Fuzzes the TS, fMP4 and MKV demuxers with cargo-fuzz (nightly toolchain, libFuzzer).
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 120)
# Seeds each corpus with a small ffmpeg clip in that container (prefixed by the control
# byte `drive` reads: chunk size and segment ends). Crashes land in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET=${1:-120}
command -v cargo-fuzz >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
seed() {  # seed NAME FFMPEG_OUTPUT_ARGS...
    local name=$1; shift
    mkdir -p "corpus/$name"
    [ -n "$(ls -A "corpus/$name")" ] && return
    local tmp; tmp=$(mktemp -d)
    ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=160x120:rate=10:duration=1 \
        -c:v libx264 -preset ultrafast -g 5 -bf 0 -pix_fmt yuv420p "$@" "$tmp/clip"
    for control in 0 7 133 200; do
        { printf "\\x$(printf %02x "$control")"; cat "$tmp/clip"; } > "corpus/$name/seed-$control"
    done
    rm -rf "$tmp"
}
seed ts -f mpegts
seed fmp4 -movflags +frag_keyframe+empty_moov+default_base_moof -f mp4
seed mkv -live 1 -f matroska
for target in ts fmp4 mkv; do
    echo "== $target: ${SECONDS_PER_TARGET}s"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -print_final_stats=1
done
