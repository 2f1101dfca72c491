//! Validation rules, each problem reported with its path.
use crate::config::{parse_str, Format};

fn errors(text: &str) -> Vec<String> {
    parse_str(text, Format::Toml)
        .expect_err("config should be invalid")
        .iter()
        .map(ToString::to_string)
        .collect()
}

const CAMERA: &str = r#"
    [cameras.camera_1.file]
    path = "clip.mp4"
    [[cameras.camera_1.detectors]]
    type = "weapon"
"#;

#[test]
fn threshold_out_of_range_names_the_exact_path() {
    let text = format!(
        "{CAMERA}params = {{ model_path = \"w.onnx\", target_classes = [\"knife\"], conf_threshold = 1.5 }}"
    );
    assert_eq!(
        errors(&text),
        ["cameras.camera_1.detectors[0].params.conf_threshold: 1.5 is not in 0..=1"]
    );
}

#[test]
fn pytorch_checkpoints_get_the_export_command() {
    let text =
        format!("{CAMERA}params = {{ model_path = \"models/w.pt\", target_classes = [\"gun\"] }}");
    let errs = errors(&text);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("yolo export model=models/w.pt format=onnx dynamic=True"),
        "{}",
        errs[0]
    );
}

#[test]
fn confirmation_must_fit_in_the_window() {
    let text = format!(
        "{CAMERA}params = {{ model_path = \"w.onnx\", target_classes = [\"gun\"], temporal_window = 3, confirmation_threshold = 4 }}"
    );
    assert_eq!(
        errors(&text),
        ["cameras.camera_1.detectors[0].params.confirmation_threshold: 4 is not in 1..=temporal_window (3)"]
    );
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = r#"
        [scheduler]
        max_batch_size = 4
        preferred_batch_size = 8
        [publishers.kds]
        stream_name = "events"
        batch_size = 501
        endpoint_url = "localhost:4566"
        [publishers.s3]
        bucket = "Bad_Bucket"
        [cameras.a]
        fps_target = 0
        [[cameras.a.detectors]]
        type = "yolo"
        params = { model_path = "m.onnx", iou_threshold = -0.1 }
        [cameras.b.file]
        path = "x.mp4"
        [cameras.b.rtsp]
        url = "http://cam"
    "#;
    let errs = errors(text);
    let expected = [
        "scheduler.preferred_batch_size: 8 is not in 1..=max_batch_size (4)",
        "publishers.kds.batch_size: 501 is not in 1..=500",
        "publishers.kds.endpoint_url: \"localhost:4566\" must be an http:// or https:// URL",
        "publishers.s3.bucket: \"Bad_Bucket\" is not a valid S3 bucket name",
        "cameras.a: has no source",
        "cameras.a.fps_target: 0 is not in 0 (exclusive)..=120",
        "cameras.a.detectors[0].params.iou_threshold: -0.1 is not in 0..=1",
        "cameras.b: has 2 sources (file, rtsp)",
        "cameras.b.detectors: an enabled camera needs at least one detector",
        "cameras.b.rtsp.url: must be an rtsp:// or rtsps:// URL with a host",
    ];
    for want in expected {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
}

#[test]
fn disabled_cameras_need_no_source_and_no_camera_is_fine() {
    let c = parse_str("[cameras.off]\nenabled = false\n", Format::Toml).unwrap();
    assert_eq!(c.enabled_cameras().count(), 0);
}

#[test]
fn queue_delay_must_stay_below_staleness() {
    let errs = errors("[scheduler]\nmax_queue_delay_ms = 500\nmax_staleness_ms = 500\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("scheduler.max_queue_delay_ms: 500 must be less"));
}

#[test]
fn s3_prefix_cannot_escape() {
    let errs = errors("[publishers.s3]\nbucket = \"ok-bucket\"\nprefix = \"a/../b\"\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("publishers.s3.prefix"));
}

#[test]
fn rtsp_urls_with_credentials_are_accepted() {
    let text = r#"
        [cameras.r.rtsp]
        url = "rtsp://user:p@ss@10.0.0.5:554/stream1"
        [[cameras.r.detectors]]
        type = "yolo"
        params = { model_path = "m.onnx" }
    "#;
    parse_str(text, Format::Toml).unwrap();
}

#[test]
fn live_source_settings_are_checked_together() {
    let text = r#"
        [cameras.k.kvs]
        stream_name = "s"
        mode = "getmedia"
        session_expires_sec = 60
        stall_timeout_sec = 0
        start_timestamp_ms = 2000
        end_timestamp_ms = 3000
        [[cameras.k.detectors]]
        type = "yolo"
        params = { model_path = "m.onnx" }
        [cameras.h.kvs]
        stream_name = "s"
        end_timestamp_ms = 3000
        [[cameras.h.detectors]]
        type = "yolo"
        params = { model_path = "m.onnx" }
        [cameras.r.rtsp]
        url = "rtsp://cam/1"
        password = "x"
        transport = "udp"
        stall_timeout_sec = 0.5
        [[cameras.r.detectors]]
        type = "yolo"
        params = { model_path = "m.onnx" }
    "#;
    let errs = errors(text);
    let expected = [
        "cameras.h.kvs.end_timestamp_ms: needs start_timestamp_ms",
        "cameras.k.kvs.end_timestamp_ms: is for mode = \"hls\"",
        "cameras.k.kvs.session_expires_sec: 60 is not in 300..=43200",
        "cameras.k.kvs.stall_timeout_sec: 0 is not in 1..=3600",
        "cameras.r.rtsp.password: needs username",
        "cameras.r.rtsp.stall_timeout_sec: 0.5 is not in 1..=3600",
    ];
    for want in expected {
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "missing {want:?} in {errs:#?}"
        );
    }
    assert_eq!(errs.len(), expected.len(), "{errs:#?}");
}

#[test]
fn a_kvs_mode_or_container_outside_the_list_is_an_error_naming_it() {
    let text = r#"
        [cameras.k.kvs]
        stream_name = "s"
        mode = "webrtc"
        [[cameras.k.detectors]]
        type = "yolo"
        params = { model_path = "m.onnx" }
    "#;
    let errs = parse_str(text, Format::Toml).unwrap_err();
    let err = errs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        err.contains("cameras.k.kvs.mode") && err.contains("webrtc"),
        "{err}"
    );
}

#[test]
fn the_gpu_keys_are_checked_and_defaulted() {
    let text = format!(
        "[engine]\ndevice_id = 64\n[decode]\nbackend = \"nvdec\"\nextra_surfaces = 17\n{CAMERA}params = {{ model_path = \"w.onnx\", target_classes = [\"knife\"] }}"
    );
    assert_eq!(
        errors(&text),
        [
            "decode.extra_surfaces: 17 is not in 0..=16",
            "engine.device_id: 64 is not in 0..=63",
        ]
    );
    let bad = format!("[decode]\nbackend = \"quicksync\"\n{CAMERA}params = {{ model_path = \"w.onnx\", target_classes = [\"knife\"] }}");
    let errs = errors(&bad).join("\n");
    assert!(
        errs.contains("decode.backend: unknown variant `quicksync`"),
        "{errs}"
    );
    let fine =
        format!("{CAMERA}params = {{ model_path = \"w.onnx\", target_classes = [\"knife\"] }}");
    let config = parse_str(&fine, Format::Toml).unwrap();
    assert_eq!(config.decode.backend, crate::config::DecodeBackend::Auto);
    assert_eq!(config.decode.extra_surfaces, 4);
    assert!(config.engine.fp16);
    assert_eq!(
        config.engine.engines_dir,
        std::path::PathBuf::from("engines")
    );
}
