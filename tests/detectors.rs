//! The seed's detectors on real models and clips through the real binary: `alpr`
//! reads the plate through the OCR stage batched across cameras, `weapon` honours its
//! target classes and confirmation, `fire_smoke` honours both thresholds; bad params
//! are clear start-up errors.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{binary, fixture, metric, read_events, temp_dir, Server};

fn write(dir: &Path, text: &str) -> String {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn header(dir: &Path) -> String {
    format!(
        "[scheduler]\nmax_batch_size = 8\npreferred_batch_size = 4\nmax_queue_delay_ms = 100\nmax_staleness_ms = 30000\n\
         [publishers.local]\ndir = {:?}\n[shutdown]\ndeadline_ms = 30000\n",
        dir.join("out").display().to_string()
    )
}

/// Runs the server until every camera's (finite) source has ended and its frames are
/// through, then stops it; returns the server (with its log) and the metrics text.
fn run_to_end(dir: &Path, config: &str, cameras: usize) -> (Server, String) {
    let mut server = Server::start(&["--config", config], dir);
    if server
        .wait_for_count("Source ended.", cameras, Duration::from_secs(180))
        .is_none()
    {
        panic!(
            "sources did not end: {:#?}",
            server.log.iter().rev().take(5).collect::<Vec<_>>()
        );
    }
    // Let the last batches and OCR reads finish before reading the metrics.
    let metrics = server.wait_settled(Duration::from_secs(60));
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(60)).unwrap().code(),
        Some(0)
    );
    (server, metrics)
}

#[test]
fn alpr_reads_the_plate_with_ocr_batched_across_cameras() {
    let (Some(clip), Some(plates), Some(ocr)) = (
        fixture("video/plate-720p.mp4"),
        fixture("models/plate-yolov8n.onnx"),
        fixture("models/ppocr-v4-rec.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("alpr");
    let mut text = header(&dir);
    for c in 0..4 {
        text.push_str(&format!(
            "[cameras.lot_{c}]\nfps_target = 5\nfile = {{ path = {clip:?}, realtime = false }}\n\
             detectors = [{{ type = \"alpr\", params = {{ detector_model_path = {plates:?}, ocr_model_path = {ocr:?}, min_text_length = 5 }} }}]\n",
            clip = clip.display().to_string(),
            plates = plates.display().to_string(),
            ocr = ocr.display().to_string(),
        ));
    }
    let (_server, metrics) = run_to_end(&dir, &write(&dir, &text), 4);
    let events = read_events(&dir.join("out"));
    assert!(!events.is_empty(), "no alpr event");
    for c in 0..4 {
        let camera = format!("lot_{c}");
        let read: Vec<&str> = events
            .iter()
            .filter(|e| e["camera_id"] == camera.as_str())
            .map(|e| e["plate"]["text"].as_str().unwrap())
            .collect();
        assert!(read.contains(&"5AU5341"), "{camera} read {read:?}");
    }
    for e in &events {
        assert_eq!(e["type"], "alpr");
        assert_eq!(e["detections"].as_array().unwrap().len(), 1);
        let confidence = e["plate"]["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&confidence));
    }
    // The OCR stage ran in batches larger than one: crops from several cameras.
    let mean = common::mean_batch(&metrics, "ppocr-v4-rec");
    assert!(mean > 1.0, "OCR batches averaged {mean}");
}

#[test]
fn weapon_is_silent_without_its_target_and_fires_on_it() {
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("weapon");
    let mut text = header(&dir);
    for (camera, target) in [("knife_watch", "knife"), ("person_watch", "person")] {
        text.push_str(&format!(
            "[cameras.{camera}]\nfps_target = 2\nfile = {{ path = {clip:?}, realtime = false }}\n\
             detectors = [{{ type = \"weapon\", params = {{ model_path = {model:?}, conf_threshold = 0.5, target_classes = [\"{target}\"], temporal_window = 5, confirmation_threshold = 3, cooldown_sec = 4 }} }}]\n",
            clip = clip.display().to_string(),
            model = model.display().to_string(),
        ));
    }
    let (_server, metrics) = run_to_end(&dir, &write(&dir, &text), 2);
    let events = read_events(&dir.join("out"));
    assert!(
        events.iter().all(|e| e["camera_id"] == "person_watch"),
        "the knife camera fired"
    );
    for e in &events {
        assert_eq!(e["type"], "weapon");
        assert!(e["detections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["label"] == "person"));
    }
    // The astronaut (the large person crossing the top half) is one track: confirmed at
    // the third processed frame (1.0 s at 2 fps), then again every 4 s of stream time.
    let astronaut_at: Vec<i64> = events
        .iter()
        .filter(|e| {
            e["detections"].as_array().unwrap().iter().any(|d| {
                let b: Vec<f64> = d["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                b[3] < 400.0 && b[2] - b[0] > 150.0
            })
        })
        .map(|e| e["pts_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(astronaut_at, [1000, 5000, 9000], "{events:#?}");
    assert_eq!(
        metric(
            &metrics,
            "infer_events_total{camera_id=\"knife_watch\",type=\"weapon\"}"
        ),
        Some(0.0)
    );
    let fired = metric(
        &metrics,
        "infer_events_total{camera_id=\"person_watch\",type=\"weapon\"}",
    )
    .unwrap();
    assert_eq!(fired, events.len() as f64);
}

#[test]
fn fire_smoke_loads_runs_and_honours_each_threshold() {
    let (Some(clip), Some(model)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/fire-smoke-yolov8.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("fire-smoke");
    let mut text = header(&dir);
    // The model's accuracy is unknown: a threshold of 1.0 can never pass, a tiny one
    // passes whatever it scores. Each camera keeps one type open.
    for (camera, fire, smoke) in [("fire_only", 0.001, 1.0), ("smoke_only", 1.0, 0.001)] {
        text.push_str(&format!(
            "[cameras.{camera}]\nfps_target = 1\nfile = {{ path = {clip:?}, realtime = false }}\n\
             detectors = [{{ type = \"fire_smoke\", params = {{ model_path = {model:?}, fire_conf_threshold = {fire}, smoke_conf_threshold = {smoke}, cooldown_sec = 0 }} }}]\n",
            clip = clip.display().to_string(),
            model = model.display().to_string(),
        ));
    }
    let (_server, metrics) = run_to_end(&dir, &write(&dir, &text), 2);
    for camera in ["fire_only", "smoke_only"] {
        let frames = metric(
            &metrics,
            &format!("infer_frames_total{{camera_id=\"{camera}\"}}"),
        )
        .unwrap();
        assert_eq!(frames, 10.0, "{camera}: 10 s at 1 fps");
    }
    let events = read_events(&dir.join("out"));
    let types = |camera: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["camera_id"] == camera)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        !types("fire_only").is_empty(),
        "a 0.001 fire threshold passes something"
    );
    assert!(types("fire_only").iter().all(|t| t == "fire"));
    assert!(
        !types("smoke_only").is_empty(),
        "a 0.001 smoke threshold passes something"
    );
    assert!(types("smoke_only").iter().all(|t| t == "smoke"));
}

#[test]
fn bad_detector_params_are_clear_errors() {
    let (Some(clip), Some(model), Some(plates)) = (
        fixture("video/person-motorcycle-720p.mp4"),
        fixture("models/yolov8n-coco.onnx"),
        fixture("models/plate-yolov8n.onnx"),
    ) else {
        return;
    };
    let dir = temp_dir("bad-params");
    let clip = clip.display().to_string();
    let cases = [
        (
            format!("detectors = [{{ type = \"weapon\", params = {{ model_path = {:?}, target_classes = [\"gun\"] }} }}]", model.display().to_string()),
            "cameras.cam.detectors[0].params.target_classes: class \"gun\" is not in the model's classes (person, bicycle, car",
        ),
        (
            format!(
                "detectors = [{{ type = \"alpr\", params = {{ detector_model_path = {:?}, ocr_model_path = \"missing/rec.onnx\" }} }}]",
                plates.display().to_string()
            ),
            "model missing/rec.onnx: file not found (the alpr detector's OCR model",
        ),
        (
            format!(
                "detectors = [{{ type = \"alpr\", params = {{ detector_model_path = {:?}, ocr_model_path = {:?} }} }}]",
                plates.display().to_string(),
                model.display().to_string()
            ),
            "yolov8n-coco.onnx: is not a PP-OCR-style text recogniser",
        ),
        (
            format!("detectors = [{{ type = \"fire_smoke\", params = {{ model_path = {:?} }} }}]", model.display().to_string()),
            "class \"fire\" is not in the model's classes",
        ),
    ];
    for (detectors, want) in cases {
        let text = format!(
            "{}[cameras.cam]\nfile = {{ path = {clip:?} }}\n{detectors}\n",
            header(&dir)
        );
        let out = binary()
            .args(["--config", &write(&dir, &text), "--http", "127.0.0.1:0"])
            .current_dir(&dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
    // Out-of-range thresholds are caught by validation, every one with its path.
    let text = format!(
        "{}[cameras.cam]\nfile = {{ path = {clip:?} }}\ndetectors = [{{ type = \"fire_smoke\", params = {{ model_path = \"f.onnx\", fire_conf_threshold = 2, smoke_conf_threshold = -1, cooldown_sec = -5 }} }}]\n",
        header(&dir)
    );
    let out = binary()
        .args(["check-config", "--config", &write(&dir, &text)])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2));
    for want in [
        "cameras.cam.detectors[0].params.cooldown_sec: -5 is not in 0..=86400",
        "cameras.cam.detectors[0].params.fire_conf_threshold: 2 is not in 0..=1",
        "cameras.cam.detectors[0].params.smoke_conf_threshold: -1 is not in 0..=1",
    ] {
        assert!(stderr.contains(want), "want {want:?} in {stderr}");
    }
}
