#!/usr/bin/env bash
# The server end to end on one clip through two paths, and their events compared:
#   bench/paths.sh BIN CLIP MODEL [RUNS] [SECONDS]
# RUNS: space-separated NAME:ENGINE[:DECODE] (default "cpu:cpu gpu:cuda:nvdec"). Each run
# is two file cameras on CLIP (realtime = false, fps_target = 5, cooldown_sec = 0: every
# processed frame is an event) with YOLOv8n at conf_threshold 0.5 and the local
# publisher, stopped by SIGINT once both sources ended (or after SECONDS, default 60).
# Prints per run its events and warnings, then how many events of the first and last
# runs agree: same camera and pts, same labels, every box within 2 px. Work in
# /tmp/kvs-infer-paths. On a lent GPU host, BIN from bench/gpu-server.sh.
set -uo pipefail
BIN=$1 CLIP=$(realpath "$2") MODEL=$(realpath "$3") RUNS=${4:-cpu:cpu gpu:cuda:nvdec} SECS=${5:-60}
WORK=/tmp/kvs-infer-paths
rm -rf "$WORK" && mkdir -p "$WORK"
for run in $RUNS; do
    IFS=: read -r name engine decode <<<"$run"
    cameras=""
    for c in a b; do
        cameras+="
[cameras.$c]
fps_target = 5
file = { path = \"$CLIP\", loop = false, realtime = false }
detectors = [
  { type = \"yolo\", params = { model_path = \"$MODEL\", conf_threshold = 0.5, cooldown_sec = 0, classes = [\"person\", \"motorcycle\", \"car\"] } },
]"
    done
    cat >"$WORK/$name.toml" <<EOF
[scheduler]
max_batch_size = 8
preferred_batch_size = 4
max_queue_delay_ms = 20
max_staleness_ms = 600000
[engine]
backend = "$engine"
[decode]
backend = "${decode:-cpu}"
[publishers.local]
dir = "$WORK/$name"
[shutdown]
deadline_ms = 10000
$cameras
EOF
    start=$(date +%s)
    "$BIN" --config "$WORK/$name.toml" --http 127.0.0.1:0 >"$WORK/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq "$SECS"); do
        sleep 1
        [ "$(grep -c 'Source ended' "$WORK/$name.log")" -ge 2 ] && { sleep 3; break; }
    done
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    echo "$name: exit $? after $(($(date +%s) - start)) s, $(wc -l <"$WORK/$name/events.jsonl" 2>/dev/null || echo 0) events"
    grep -hE 'Decoding on|Using the|Engine worker' "$WORK/$name.log" | sed -E 's/.*"message":"([^"]*)".*/  \1/' | sort | uniq -c
    grep -E '"level":"(WARN|ERROR)"' "$WORK/$name.log" | cut -c1-300 | sort | uniq -c | head -5
done
python3 - "$WORK" $RUNS <<'PY'
import json, sys
work, runs = sys.argv[1], [r.split(":")[0] for r in sys.argv[2:]]
def load(name):
    out = {}
    try:
        for line in open(f"{work}/{name}/events.jsonl"):
            e = json.loads(line)
            out[(e["camera_id"], e["pts_ms"])] = sorted((d["label"], d["bbox"], d["confidence"]) for d in e["detections"])
    except FileNotFoundError:
        pass
    return out
a, b = load(runs[0]), load(runs[-1])
both = set(a) & set(b)
same = worst_px = worst_conf = 0
for k in both:
    x, y = a[k], b[k]
    if [d[0] for d in x] == [d[0] for d in y]:
        px = max([abs(p - q) for dx, dy in zip(x, y) for p, q in zip(dx[1], dy[1])] or [0])
        worst_px = max(worst_px, px)
        worst_conf = max([worst_conf] + [abs(dx[2] - dy[2]) for dx, dy in zip(x, y)])
        same += px <= 2.0
print(f"events: {runs[0]} {len(a)}, {runs[-1]} {len(b)}, at the same camera and pts {len(both)}, "
      f"same labels with every box within 2 px {same}; largest box difference {worst_px:.2f} px, "
      f"confidence {worst_conf:.4f}")
PY
