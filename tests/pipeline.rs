//! The CPU pipeline end to end through the real binary: file cameras on the real clip,
//! the real YOLOv8n model, batching across cameras, events and snapshots on disk, and a
//! SIGTERM that loses nothing. Also the start-up errors a user meets first.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{binary, fixture, get, metric, read_events, temp_dir, Server};

/// A config with `cameras` file cameras on `clip`, each through `model`.
fn config(dir: &Path, clip: &Path, model: &Path, cameras: &[&str], extra: &str) -> String {
    let mut text = format!(
        r#"
[scheduler]
max_batch_size = 8
preferred_batch_size = 4
max_queue_delay_ms = 100
max_staleness_ms = 10000
[engine]
backend = "cpu"
[publishers.local]
dir = {out:?}
[shutdown]
deadline_ms = 30000
{extra}
"#,
        out = dir.join("out").display().to_string()
    );
    for id in cameras {
        text.push_str(&format!(
            r#"
[cameras.{id}]
fps_target = 2
file = {{ path = {clip:?}, loop = true, realtime = false }}
detectors = [{{ type = "yolo", params = {{ model_path = {model:?}, conf_threshold = 0.5, classes = ["person", "motorcycle"], cooldown_sec = 0 }} }}]
"#,
            clip = clip.display().to_string(),
            model = model.display().to_string(),
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn iou(a: [f64; 4], b: [f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
}

/// Where the clip's recipe pastes each photo at `t` seconds into the 10 s loop:
/// the person (340×340) moves left→right at the top, the motorcycle (480×320)
/// right→left at the bottom.
fn tile(label: &str, t: f64) -> [f64; 4] {
    match label {
        "person" => {
            let x = (1280.0 - 340.0) * t / 10.0;
            [x, 10.0, x + 340.0, 350.0]
        }
        _ => {
            let x = (1280.0 - 480.0) * (1.0 - t / 10.0);
            [x, 390.0, x + 480.0, 710.0]
        }
    }
}

#[test]
fn four_file_cameras_batch_detect_snapshot_and_lose_nothing_on_sigterm() {
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("e2e");
    let cameras = ["cam_a", "cam_b", "cam_c", "cam_d"];
    let config = config(&dir, &clip, &model, &cameras, "");
    let mut server = Server::start(&["--config", &config], &dir);

    // Let a few rounds of batches through, while the sources keep looping.
    assert!(
        server
            .wait_for_count("Event.", 24, Duration::from_secs(180))
            .is_some(),
        "events stopped: {:#?}",
        server.log.iter().rev().take(10).collect::<Vec<_>>()
    );
    let (_, _, metrics) = get(server.addr, "/metrics");
    let mean = common::mean_batch(&metrics, "yolov8n-coco");
    assert!(
        mean > 1.5,
        "mean batch {mean}: batches larger than 1 must form"
    );
    for camera in cameras {
        let frames = metric(
            &metrics,
            &format!("infer_frames_total{{camera_id=\"{camera}\"}}"),
        )
        .unwrap();
        assert!(frames >= 3.0, "{camera} ran {frames} frames");
        assert_eq!(
            metric(&metrics, &format!("worker_alive{{camera_id=\"{camera}\"}}")),
            Some(1.0)
        );
        assert!(metrics.contains(&format!("infer_latency_ms_count{{camera_id=\"{camera}\"}}")));
    }
    for family in kvs_infer::telemetry::names::SEED_FAMILIES {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} missing from /metrics"
        );
    }
    let (status, _, _) = get(server.addr, "/readyz");
    assert_eq!(status, 200);

    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(40))
        .expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0));

    // Nothing lost: every event the server announced is in events.jsonl.
    let logged: BTreeSet<String> = server
        .log
        .iter()
        .filter(|l| l["message"] == "Event.")
        .map(|l| l["event_id"].as_str().unwrap().to_owned())
        .collect();
    let out = dir.join("out");
    let events = read_events(&out);
    let written: BTreeSet<String> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(logged.len() >= 24);
    assert_eq!(
        logged, written,
        "events logged but not written (or the reverse)"
    );

    // Boxes are where the clip puts the person (top, moving right) and the motorcycle
    // (bottom, moving left).
    for event in &events {
        assert_eq!(event["schema"], "kvs-infer/1.0");
        assert_eq!(event["type"], "yolo");
        let t = (event["pts_ms"].as_i64().unwrap() % 10_000) as f64 / 1000.0;
        let detections = event["detections"].as_array().unwrap();
        for label in ["person", "motorcycle"] {
            let best = detections
                .iter()
                .filter(|d| d["label"] == label)
                .map(|d| {
                    let b: Vec<f64> = d["bbox"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect();
                    iou([b[0], b[1], b[2], b[3]], tile(label, t))
                })
                .fold(0.0, f64::max);
            assert!(
                best > 0.5,
                "{label} at t={t}: best IoU with its tile {best:.2} in {event}"
            );
        }
    }

    // Snapshots exist for every event and decode as JPEG of the source size.
    for event in &events {
        let snapshot = out.join(event["snapshot"].as_str().expect("snapshot path"));
        assert!(snapshot.is_file(), "{}", snapshot.display());
    }
    for event in events.iter().take(3) {
        let bytes = std::fs::read(out.join(event["snapshot"].as_str().unwrap())).unwrap();
        let mut decoder = jpeg_decoder::Decoder::new(&bytes[..]);
        decoder.decode().expect("snapshot is a JPEG");
        let info = decoder.info().unwrap();
        assert_eq!((info.width, info.height), (1280, 720));
    }
    for message in [
        "Draining in-flight batches.",
        "Publisher closed.",
        "Shutdown complete.",
    ] {
        assert!(server.logged(message), "{message}");
    }
}

#[test]
fn a_corrupt_clip_fails_its_camera_clearly_while_the_others_run() {
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("corrupt");
    let bad = dir.join("corrupt.mp4");
    let mut garbage = std::fs::read(&clip).unwrap();
    garbage.truncate(4096);
    garbage[..64].fill(0xAB);
    std::fs::write(&bad, garbage).unwrap();
    let text = std::fs::read_to_string(config(&dir, &clip, &model, &["good"], "")).unwrap();
    let text = format!(
        "{text}\n[cameras.broken]\nfps_target = 2\nfile = {{ path = {bad:?}, realtime = false }}\ndetectors = [{{ type = \"yolo\", params = {{ model_path = {model:?} }} }}]\n",
        bad = bad.display().to_string(),
        model = model.display().to_string()
    );
    std::fs::write(dir.join("config.toml"), text).unwrap();
    let config = dir.join("config.toml").display().to_string();
    let mut server = Server::start(&["--config", &config], &dir);

    let failed = server
        .wait_for_count(
            "Camera failed; giving up on it. Other cameras go on.",
            1,
            Duration::from_secs(60),
        )
        .expect("the broken camera gives up");
    assert_eq!(failed["span"]["camera_id"], "broken");
    assert!(
        failed["error"].as_str().unwrap().contains("corrupt.mp4"),
        "{failed}"
    );
    assert!(server.logged("Stream failed; reconnecting."));
    // The good camera goes on producing events.
    assert!(server
        .wait_for_count("Event.", 1, Duration::from_secs(60))
        .is_some());
    let (status, _, body) = get(server.addr, "/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("broken") && !body.contains("good"), "{body}");
    let (_, _, metrics) = get(server.addr, "/metrics");
    assert_eq!(
        metric(&metrics, "worker_alive{camera_id=\"broken\"}"),
        Some(0.0)
    );
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(40)).unwrap().code(),
        Some(0)
    );
}

/// Runs the server on a config and expects a start-up failure: exit 2, one message.
fn start_failure(dir: &Path, config: &str) -> String {
    let out = binary()
        .args(["--config", config, "--http", "127.0.0.1:0"])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn a_missing_model_is_a_start_up_error_naming_the_file() {
    let Some(clip) = fixture("video/person-motorcycle-720p.mp4") else {
        return;
    };
    let dir = temp_dir("missing-model");
    let model = dir.join("nowhere/yolo.onnx");
    let stderr = start_failure(&dir, &config(&dir, &clip, &model, &["cam"], ""));
    assert!(
        stderr.contains(&format!("model {}: file not found", model.display())),
        "{stderr}"
    );
}

#[test]
fn a_model_that_is_not_a_yolo_detector_is_refused_before_cameras_start() {
    let (Some(clip), Some(ocr)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/ppocr-v4-rec.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("not-yolo");
    let stderr = start_failure(&dir, &config(&dir, &clip, &ocr, &["cam"], ""));
    assert!(
        stderr.contains("ppocr-v4-rec.onnx: is not a YOLOv8-style detector"),
        "{stderr}"
    );

    let corrupt = dir.join("corrupt.onnx");
    std::fs::write(&corrupt, b"not a protobuf at all").unwrap();
    let stderr = start_failure(&dir, &config(&dir, &clip, &corrupt, &["cam"], ""));
    assert!(
        stderr.contains("corrupt.onnx: ONNX Runtime cannot load it"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_class_or_an_unwritable_output_dir_is_a_clear_start_up_error() {
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("startup-errors");
    let text = std::fs::read_to_string(config(&dir, &clip, &model, &["cam"], "")).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        text.replace("\"motorcycle\"", "\"unicorn\""),
    )
    .unwrap();
    let stderr = start_failure(&dir, dir.join("config.toml").to_str().unwrap());
    assert!(
        stderr.contains("cameras.cam.detectors[0].params.classes: class \"unicorn\" is not in the model's classes (person, bicycle, car"),
        "{stderr}"
    );

    // Nothing was written for a config that failed to start.
    assert!(!dir.join("out").exists());
    // The output "directory" is a file: the local sink cannot be opened.
    std::fs::write(dir.join("out"), b"a file").unwrap();
    let stderr = start_failure(&dir, &config(&dir, &clip, &model, &["cam"], ""));
    assert!(
        stderr.contains("cannot open the local publisher at"),
        "{stderr}"
    );
}

#[test]
fn a_synthetic_camera_runs_through_the_pipeline_without_decoding() {
    let Some(model) = fixture("models/yolov8n-coco.onnx") else {
        return;
    };
    let dir = temp_dir("synthetic");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[cameras.synth]\nfps_target = 5\nsynthetic = {{ width = 320, height = 240, fps = 10 }}\n\
             detectors = [{{ type = \"yolo\", params = {{ model_path = {model:?} }} }}]\n",
            model = model.display().to_string()
        ),
    )
    .unwrap();
    let mut server = Server::start(&["--config", config.to_str().unwrap()], &dir);
    server
        .wait_for_count("Frames flowing.", 1, Duration::from_secs(30))
        .expect("synthetic frames flow");
    let frames =
        |metrics: &str| metric(metrics, "infer_frames_total{camera_id=\"synth\"}").unwrap_or(0.0);
    let ran = server.wait_metrics(Duration::from_secs(120), |m| frames(m) >= 3.0);
    let (_, _, metrics) = get(server.addr, "/metrics");
    assert!(ran, "synthetic frames were not run: {}", frames(&metrics));
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(0)
    );
}
