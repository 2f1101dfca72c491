//! The real binary as a server: HTTP endpoints, metrics, JSON logs, graceful shutdown on
//! SIGTERM and SIGINT, and clear start-up errors.

mod common;

use std::time::{Duration, Instant};

use common::{binary, get, repo, temp_dir, Server};
use kvs_infer::telemetry::names;

fn write_config(dir: &std::path::Path) -> String {
    let path = dir.join("server.toml");
    std::fs::write(
        &path,
        format!(
            "[publishers.local]\ndir = {:?}\n[shutdown]\ndeadline_ms = 3000\n",
            dir.join("out").display().to_string()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn serves_health_readiness_and_metrics_then_exits_0_on_sigterm() {
    let dir = temp_dir("sigterm");
    let config = write_config(&dir);
    let mut server = Server::start(&["--config", &config], &dir);

    let (status, content_type, body) = get(server.addr, "/healthz");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        health,
        serde_json::json!({"status": "ok", "service": "kvs-infer"})
    );

    let (status, _, body) = get(server.addr, "/readyz");
    assert_eq!(status, 200, "{body}");

    let (status, content_type, body) = get(server.addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        body.contains(&format!(
            "{}{{sink=\"local\"}} 0\n",
            names::PUBLISHER_FAILURES_TOTAL
        )),
        "{body}"
    );
    assert!(!body.contains("otel_scope"), "{body}");

    let (status, _, _) = get(server.addr, "/nope");
    assert_eq!(status, 404);

    let sent = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("server did not exit within 5 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "log: {:#?}", server.log);
    assert!(sent.elapsed() < Duration::from_secs(5));
    for message in [
        "Stopping intake.",
        "Flushing publishers.",
        "Publisher closed.",
        "Shutdown complete.",
    ] {
        assert!(
            server.logged(message),
            "no {message:?} in {:#?}",
            server.log
        );
    }
    // Shutdown happens in DESIGN §4's order.
    let position = |m: &str| server.log.iter().position(|l| l["message"] == m).unwrap();
    assert!(position("Stopping intake.") < position("Flushing publishers."));
    assert!(position("Publisher closed.") < position("Shutdown complete."));
    assert!(dir.join("out/events.jsonl").is_file());
}

#[test]
fn logs_are_json_with_timestamp_level_target_and_fields() {
    let dir = temp_dir("jsonlog");
    let config = write_config(&dir);
    let mut server = Server::start(&["--config", &config], &dir);
    let listening = server
        .log
        .iter()
        .find(|l| l["message"] == "Server listening.")
        .unwrap()
        .clone();
    assert!(listening["timestamp"].as_str().unwrap().contains('T'));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "kvs_infer::pipeline");
    assert!(listening["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    server.signal(libc::SIGINT);
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exit on SIGINT");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn the_embedded_demo_config_runs_without_any_flag_but_http() {
    let dir = temp_dir("embedded");
    let Some(()) = common::stage_demo_assets(&dir) else {
        return;
    };
    let mut server = Server::start(&[], &dir);
    assert!(server.log.iter().any(|l| l["config"] == "<embedded demo>"));
    let (status, _, body) = get(server.addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    // The demo's four cameras start and produce events.
    assert!(
        server
            .wait_for_count("Event.", 1, Duration::from_secs(60))
            .is_some(),
        "no event: {:#?}",
        server.log
    );
    let (status, _, body) = get(server.addr, "/readyz");
    assert_eq!(status, 200, "{body}");
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(15)).unwrap().code(),
        Some(0)
    );
    // The demo's local sink writes under the working directory.
    assert!(!common::read_events(&dir.join("output")).is_empty());
}

#[test]
fn the_seed_config_starts_its_kvs_cameras_but_a_missing_model_is_a_clear_error() {
    // Its KVS sources are accepted now; its models are placeholders for the user's
    // exports, so start-up stops at the first missing one with exit 2.
    let out = binary()
        .args(["--config", "config/cameras.yaml", "--http", "127.0.0.1:0"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("kvs-infer: error: model models/") && stderr.contains("file not found"),
        "{stderr}"
    );
    assert!(!stderr.contains("not built yet"), "{stderr}");
}

#[test]
fn a_busy_port_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = temp_dir("busy");
    let config = write_config(&dir);
    let out = binary()
        .args(["--config", &config, "--http", &addr])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn a_second_signal_exits_at_once_without_finishing_the_flush() {
    let (Some(clip), Some(model)) = (
        common::fixture("video/person-motorcycle-720p.mp4"),
        common::fixture("models/yolov8n-coco.onnx"),
    ) else {
        return;
    };
    // Events for a Kinesis endpoint where nothing listens: the flush would wait out
    // the 60 s deadline retrying them.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = temp_dir("second-signal");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[publishers.kds]\nregion = \"us-east-1\"\nstream_name = \"s\"\nendpoint_url = \"http://{dead}\"\n\
             [shutdown]\ndeadline_ms = 60000\n\
             [cameras.cam]\nfps_target = 2\nfile = {{ path = {clip:?}, realtime = false }}\n\
             detectors = [{{ type = \"yolo\", params = {{ model_path = {model:?}, cooldown_sec = 0 }} }}]\n",
            clip = clip.display().to_string(),
            model = model.display().to_string(),
        ),
    )
    .unwrap();
    let mut server = Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    assert!(server
        .wait_for_count("Event.", 3, Duration::from_secs(60))
        .is_some());
    server.signal(libc::SIGTERM);
    assert!(server
        .wait_for_count("Flushing publishers.", 1, Duration::from_secs(30))
        .is_some());
    // The flush is stuck retrying; a second signal ends it now.
    let sent = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exit at once on the second signal");
    assert_eq!(status.code(), Some(130));
    assert!(sent.elapsed() < Duration::from_secs(10));
    assert!(!server.logged("Shutdown complete."));
}
