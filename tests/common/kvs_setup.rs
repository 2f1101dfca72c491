//! What the live-ingest tests share: AWS settings for the fake KVS, the model and the
//! fake's media (or a loud skip), configs with one camera per source, and reading back
//! events and ingest counters.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::common::{camera_events, fixture, metric, skip, wait_until};
use super::fake_kvs::Media;

/// AWS settings for talking to the fake KVS.
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The model and the fake's media, or a loud skip.
pub fn assets() -> Option<(PathBuf, Media)> {
    let model = fixture("models/yolov8n-coco.onnx")?;
    let clip = fixture("video/person-motorcycle-720p.mp4")?;
    match Media::prepare(&clip) {
        Some(media) => Some((model, media)),
        None => {
            skip("ffmpeg could not cut the clip for the fake KVS");
            None
        }
    }
}

/// One camera's TOML at 2 fps: `source` is its source table's body.
pub fn camera(id: &str, table: &str, source: &str, model: &Path) -> String {
    camera_at(2.0, id, table, source, model)
}

/// One camera's TOML at `fps_target`, detecting people and motorcycles (both in every
/// frame of the clip) with an event for every frame.
pub fn camera_at(fps_target: f64, id: &str, table: &str, source: &str, model: &Path) -> String {
    format!(
        r#"
[cameras.{id}]
fps_target = {fps_target}
[cameras.{id}.{table}]
{source}
[[cameras.{id}.detectors]]
type = "yolo"
params = {{ model_path = {model:?}, conf_threshold = 0.5, classes = ["person", "motorcycle"], cooldown_sec = 0 }}
"#,
        model = model.display().to_string()
    )
}

/// A `[cameras.*.kvs]` body for `stream` on the fake at `endpoint`, with quick retries,
/// a 6 s stall timeout, and `extra` lines.
pub fn kvs(stream: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "stream_name = \"{stream}\"\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\nretry_delay_sec = 0.2\nstall_timeout_sec = 6\n{extra}"
    )
}

/// Writes `dir/config.toml` with `cameras`, the CPU engine and local events (no
/// snapshots) in `dir/out`; returns its path. These tests are about ingest: a local
/// sink drawing and encoding a JPEG per event falls far behind on a loaded 2-core
/// machine (the publisher issue), so they save none, and give shutdown a generous
/// deadline.
pub fn write_config(dir: &Path, cameras: &[String]) -> String {
    let mut text = format!(
        "[engine]\nbackend = \"cpu\"\n[scheduler]\nmax_batch_size = 4\npreferred_batch_size = 2\nmax_queue_delay_ms = 50\n[shutdown]\ndeadline_ms = 120000\n[publishers.local]\nsave_snapshots = false\ndir = {:?}\n",
        dir.join("out").display().to_string()
    );
    for c in cameras {
        text.push_str(c);
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Events of `camera` under the config's output directory.
pub fn events_of(dir: &Path, camera: &str) -> Vec<serde_json::Value> {
    camera_events(&dir.join("out"), camera)
}

/// Waits until every camera in `cameras` has at least `n` events.
pub fn wait_events(dir: &Path, cameras: &[&str], n: usize, timeout: Duration) -> bool {
    wait_until(timeout, || {
        cameras.iter().all(|c| events_of(dir, c).len() >= n)
    })
}

/// The newest `ingest_errors_total` for a camera and reason.
pub fn ingest_errors(metrics: &str, camera: &str, reason: &str) -> f64 {
    metric(
        metrics,
        &format!("ingest_errors_total{{camera_id=\"{camera}\",reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Frames of `camera` that the scheduler dropped (every reason), from `/metrics`.
pub fn dropped(metrics: &str, camera: &str) -> f64 {
    ["replaced", "stale", "cancelled", "engine_error"]
        .iter()
        .map(|reason| {
            metric(
                metrics,
                &format!("frames_dropped_total{{camera_id=\"{camera}\",reason=\"{reason}\"}}"),
            )
            .unwrap_or(0.0)
        })
        .sum()
}

/// Checks that a camera whose every frame makes an event ran its media at
/// `fps_target`: no pts twice, and the frames it selected (events plus frames the
/// scheduler dropped under load) within 10% of what `fps_target` takes from the media
/// its events span (less `gap_ms` of media without frames).
pub fn check_rate(
    id: &str,
    events: &[serde_json::Value],
    dropped: f64,
    fps_target: f64,
    gap_ms: i64,
) -> Result<(), String> {
    let mut pts: Vec<i64> = events
        .iter()
        .map(|e| e["pts_ms"].as_i64().unwrap())
        .collect();
    pts.sort_unstable();
    let n = pts.len();
    pts.dedup();
    if pts.len() != n {
        return Err(format!("{id}: {} frames ran twice", n - pts.len()));
    }
    let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
        return Err(format!("{id}: no events"));
    };
    let media_s = (last - first - gap_ms) as f64 / 1000.0;
    let expected = media_s * fps_target + 1.0;
    let selected = n as f64 + dropped;
    if (selected - expected).abs() > expected * 0.1 + 1.0 {
        return Err(format!(
            "{id}: {selected} frames selected ({n} run, {dropped} dropped) from {media_s:.1} s of media, where {fps_target} fps takes {expected:.0}; pts {pts:?}"
        ));
    }
    Ok(())
}
