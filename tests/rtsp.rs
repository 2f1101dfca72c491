//! RTSP end to end: the real binary reads H.264 and H.265 cameras from a real RTSP
//! server (gst-rtsp-server, tests/support/rtsp_server.py) behind Basic authentication,
//! with credentials in the URL and in the config's fields, produces detections, and
//! reconnects when the server goes away and comes back.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{
    camera_events, fixture, get, labels, metric, repo, temp_dir, wait_until, worker_alive, Server,
};

const PYTHON: &str = "/usr/bin/python3";

/// An H.265 copy of the clip (cached), or a loud skip.
fn h265_clip(h264: &Path) -> Option<PathBuf> {
    let dir = repo().join("target/fake-rtsp");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("person-motorcycle-720p-h265.mkv");
    // One test thread encodes it while the others wait for it.
    static ENCODING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _encoding = ENCODING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !out.exists() {
        let tmp = dir.join(format!("tmp-h265-{}.mkv", std::process::id()));
        let ok = Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y", "-i"])
            .arg(h264)
            .args([
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error:keyint=25",
                "-pix_fmt",
                "yuv420p",
            ])
            .arg(&tmp)
            .status()
            .is_ok_and(|s| s.success());
        if !ok || std::fs::rename(&tmp, &out).is_err() {
            common::skip("ffmpeg could not encode H.265 (libx265)");
            return None;
        }
    }
    Some(out)
}

/// The RTSP server process.
struct Rtsp {
    child: Child,
}

impl Rtsp {
    fn start(port: u16, mounts: &[(&str, &Path)]) -> Option<Rtsp> {
        let mut cmd = Command::new(PYTHON);
        cmd.arg(repo().join("tests/support/rtsp_server.py"))
            .arg(port.to_string())
            .args(["--user", "viewer", "--password", "s3cret:!"]);
        for (mount, path) in mounts {
            cmd.arg(format!("{mount}={}", path.display()));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let mut first = String::new();
        use std::io::BufRead as _;
        let mut out = std::io::BufReader::new(child.stdout.take()?);
        out.read_line(&mut first).ok()?;
        if first.trim() != "ready" {
            let _ = child.kill();
            return None;
        }
        Some(Rtsp { child })
    }
}

impl Drop for Rtsp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn events_of(dir: &Path, camera: &str) -> Vec<serde_json::Value> {
    camera_events(&dir.join("out"), camera)
}

#[test]
fn h264_and_h265_rtsp_cameras_with_credentials_detect_and_reconnect() {
    let (Some(model), Some(clip)) = (
        fixture("models/yolov8n-coco.onnx"),
        fixture("video/person-motorcycle-720p.mp4"),
    ) else {
        return;
    };
    let Some(h265) = h265_clip(&clip) else { return };
    let port = free_port();
    let mounts = [("cam264", clip.as_path()), ("cam265", h265.as_path())];
    let Some(rtsp) = Rtsp::start(port, &mounts) else {
        common::skip("no RTSP server: python3-gi with gir1.2-gst-rtsp-server-1.0 is needed (scripts/setup.sh --test)");
        return;
    };
    let dir = temp_dir("rtsp");
    let detector = format!(
        "[[cameras.{{id}}.detectors]]\ntype = \"yolo\"\nparams = {{ model_path = {:?}, conf_threshold = 0.5, classes = [\"person\", \"motorcycle\"], cooldown_sec = 0 }}\n",
        model.display().to_string()
    );
    let config = format!(
        r#"[engine]
backend = "cpu"
[publishers.local]
dir = {out:?}
[cameras.h264]
fps_target = 2
[cameras.h264.rtsp]
url = "rtsp://viewer:s3cret%3A%21@127.0.0.1:{port}/cam264"
retry_delay_sec = 0.2
stall_timeout_sec = 3
{d264}
[cameras.h265]
fps_target = 2
[cameras.h265.rtsp]
url = "rtsp://127.0.0.1:{port}/cam265"
username = "viewer"
password = "s3cret:!"
retry_delay_sec = 0.2
stall_timeout_sec = 3
{d265}"#,
        out = dir.join("out").display().to_string(),
        d264 = detector.replace("{id}", "h264"),
        d265 = detector.replace("{id}", "h265"),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut server = Server::start(&["--config", path.to_str().unwrap()], &dir);
    let cams = ["h264", "h265"];
    let first = wait_until(Duration::from_secs(60), || {
        cams.iter().all(|c| events_of(&dir, c).len() >= 3)
    });

    // The RTSP server goes away: both cameras notice; it comes back: both resume.
    drop(rtsp);
    let down = server.wait_metrics(Duration::from_secs(20), |m| {
        cams.iter().all(|c| worker_alive(m, c) == Some(0.0))
    });
    let restarted_ms = kvs_infer::ingest::now_epoch_ms();
    let rtsp = Rtsp::start(port, &mounts).expect("the RTSP server restarts");
    let back = wait_until(Duration::from_secs(60), || {
        cams.iter().all(|c| {
            events_of(&dir, c)
                .iter()
                .filter(|e| e["detected_at_ms"].as_i64().unwrap() > restarted_ms)
                .count()
                >= 2
        })
    });
    let metrics = get(server.addr, "/metrics").2;
    server.signal(libc::SIGTERM);
    let code = server
        .wait_exit(Duration::from_secs(60))
        .and_then(|s| s.code());
    drop(rtsp);
    let log = || server.log_text();
    assert!(first, "no events from both cameras; log:\n{}", log());
    assert!(down, "worker_alive did not drop to 0; log:\n{}", log());
    assert!(back, "events did not resume; log:\n{}", log());
    assert_eq!(code, Some(0));
    for id in cams {
        let labels = labels(&events_of(&dir, id));
        assert!(
            labels.contains("person") && labels.contains("motorcycle"),
            "{id}: {labels:?}"
        );
        assert_eq!(worker_alive(&metrics, id), Some(1.0), "{id}");
        let failures: f64 = ["stream", "stall"]
            .iter()
            .filter_map(|r| {
                metric(
                    &metrics,
                    &format!("ingest_errors_total{{camera_id=\"{id}\",reason=\"{r}\"}}"),
                )
            })
            .sum();
        assert!(failures >= 1.0, "{id}: the outage was not counted");
    }
    // Credentials never reach the log.
    assert!(!log().contains("s3cret"), "a password was logged");
}
