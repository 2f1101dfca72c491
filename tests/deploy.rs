//! The deployment recipes against the real server: camera sharding through the binary,
//! the Prometheus rules with promtool, every metric the alerts and the dashboard use
//! on a running server's /metrics, the manifests as YAML, and the ConfigMap's config
//! through the server's own validation.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{fixture, get, repo, skip, temp_dir, Server};
use kvs_infer::config::{parse_str, Format};
use serde::Deserialize as _;

const CAMERAS: [&str; 7] = [
    "lobby", "dock", "gate_a", "gate_b", "roof", "lot_1", "lot_2",
];

/// A config with every camera synthetic and tiny, through the real model.
fn config(dir: &std::path::Path, model: &std::path::Path) -> String {
    let mut text = format!(
        "[publishers.local]\ndir = {:?}\n",
        dir.join("out").display().to_string()
    );
    for id in CAMERAS {
        text.push_str(&format!(
            "[cameras.{id}]\nfps_target = 2\nsynthetic = {{ width = 64, height = 48, fps = 4 }}\n\
             detectors = [{{ type = \"yolo\", params = {{ model_path = {:?} }} }}]\n",
            model.display().to_string()
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn owned(server: &Server) -> BTreeSet<String> {
    let line = server
        .log
        .iter()
        .find(|l| l["message"] == "Cameras this replica serves.")
        .expect("the start-up log names the cameras");
    // `owned` is logged with Debug formatting: ["a", "b"].
    line["owned"]
        .as_str()
        .unwrap()
        .trim_matches(|c| c == '[' || c == ']')
        .split(", ")
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_matches('"').to_owned())
        .collect()
}

#[test]
fn replicas_serve_disjoint_shards_that_cover_every_camera() {
    let Some(model) = fixture("models/yolov8n-coco.onnx") else {
        return;
    };
    let dir = temp_dir("shards");
    let config = config(&dir, &model);
    let mut union = BTreeSet::new();
    for index in 0..3 {
        let shard = format!("{index}/3");
        let mut server = Server::start(&["--config", &config, "--shard", &shard], &dir);
        let mine = owned(&server);
        let (_, _, metrics) = get(server.addr, "/metrics");
        for id in &mine {
            assert!(
                metrics.contains(&format!(
                    "shard_camera_owned{{camera_id=\"{id}\",shard=\"{shard}\"}} 1"
                )),
                "{id} missing from /metrics"
            );
            assert!(union.insert(id.clone()), "{id} owned twice");
        }
        for id in CAMERAS.iter().filter(|c| !mine.contains(**c)) {
            assert!(
                !metrics.contains(&format!("camera_id=\"{id}\"")),
                "{id} is not ours"
            );
        }
        server.signal(libc::SIGTERM);
        assert_eq!(
            server.wait_exit(Duration::from_secs(30)).unwrap().code(),
            Some(0)
        );
    }
    let all: BTreeSet<String> = CAMERAS.iter().map(|c| c.to_string()).collect();
    assert_eq!(union, all);

    // A StatefulSet pod takes its index from its hostname.
    let mut server = Server::start_with_env(
        &["--config", &config, "--shard", "hostname/3"],
        &dir,
        &[("HOSTNAME", "kvs-infer-2")],
    );
    let line = server
        .log
        .iter()
        .find(|l| l["message"] == "Cameras this replica serves.")
        .unwrap()
        .clone();
    assert_eq!(line["shard"], "2/3");
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(30));
}

fn promtool() -> Option<PathBuf> {
    let cached = repo().join(".cache/tools/promtool");
    if cached.is_file() {
        return Some(cached);
    }
    let on_path = Command::new("promtool").arg("--version").output().is_ok();
    if on_path {
        return Some(PathBuf::from("promtool"));
    }
    skip("promtool not found (scripts/setup.sh --test unpacks it into .cache/tools)");
    None
}

#[test]
fn alert_rules_pass_promtool() {
    let Some(promtool) = promtool() else {
        return;
    };
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(repo().join("deploy/prometheus/alerts.yml"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SUCCESS: 4 rules found"), "{text}");
}

/// Metric names a PromQL expression selects (identifiers followed by `{`).
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut start = None;
    for (i, &b) in bytes.iter().enumerate() {
        let ident = b.is_ascii_alphanumeric() || b == b'_' || b == b':';
        match (start, ident) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                if b == b'{' && !bytes[s].is_ascii_digit() {
                    out.push(expr[s..i].to_owned());
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn family(name: &str, exported: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if exported.contains(&format!("# TYPE {base} histogram")) {
                return base.to_owned();
            }
        }
    }
    name.to_owned()
}

#[test]
fn every_metric_the_alerts_and_dashboard_use_is_exported() {
    let Some(model) = fixture("models/yolov8n-coco.onnx") else {
        return;
    };
    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap(),
    )
    .unwrap();
    let mut used = BTreeSet::new();
    for rule in alerts["groups"][0]["rules"].as_sequence().unwrap() {
        used.extend(metrics_in(rule["expr"].as_str().unwrap()));
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/kvs-infer.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            used.extend(metrics_in(target["expr"].as_str().unwrap()));
        }
    }
    for seed in kvs_infer::telemetry::names::SEED_FAMILIES {
        assert!(
            used.iter().any(|u| u.starts_with(seed)),
            "the dashboard or alerts should use {seed}"
        );
    }

    let dir = temp_dir("deploy-metrics");
    let mut server = Server::start(&["--config", &config(&dir, &model)], &dir);
    let mut exported = String::new();
    for _ in 0..150 {
        exported = get(server.addr, "/metrics").2;
        if exported.contains("scheduler_queue_delay_ms_bucket")
            && exported.contains("infer_latency_ms_bucket")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for name in &used {
        let base = family(name, &exported);
        assert!(
            exported.contains(&format!("# TYPE {base} ")),
            "{name} is used but {base} is not on /metrics"
        );
    }
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(30)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn manifests_parse_and_the_configmap_config_is_valid() {
    let mut kinds = BTreeSet::new();
    for file in [
        "configmap.yaml",
        "deployment.yaml",
        "deployment-gpu.yaml",
        "statefulset.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join("deploy/k8s").join(file)).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            let kind = value["kind"].as_str().unwrap().to_owned();
            if kind == "ConfigMap" {
                let config = value["data"]["cameras.toml"].as_str().unwrap();
                parse_str(config, Format::Toml).unwrap_or_else(|e| panic!("{file}: {e:?}"));
            }
            if kind == "Deployment" || kind == "StatefulSet" {
                let container = &value["spec"]["template"]["spec"]["containers"][0];
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["path"], "/healthz",
                    "{file}"
                );
                assert_eq!(
                    container["readinessProbe"]["httpGet"]["path"], "/readyz",
                    "{file}"
                );
                let annotations = &value["spec"]["template"]["metadata"]["annotations"];
                assert_eq!(annotations["prometheus.io/scrape"], "true", "{file}");
            }
            kinds.insert(kind);
        }
    }
    assert_eq!(
        kinds,
        ["ConfigMap", "Deployment", "Service", "StatefulSet"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    let gpu = std::fs::read_to_string(repo().join("deploy/k8s/deployment-gpu.yaml")).unwrap();
    assert!(gpu.contains("nvidia.com/gpu: 1"));
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/kvs-infer.service")).unwrap();
    for hardening in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "User=kvs-infer",
    ] {
        assert!(unit.contains(hardening), "{hardening}");
    }
}
