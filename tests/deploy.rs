//! The deployment recipes against the real server: camera sharding through the binary,
//! the Prometheus rules with promtool, every metric the alerts and the dashboard use
//! on a running server's /metrics, the manifests as YAML, and the ConfigMap's config
//! through the server's own validation, and `Dockerfile.cuda`'s structure (this machine
//! has no Docker daemon to build it).

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
    // Histograms appear with their first sample (a batch run, a frame's latency): wait
    // until every family used is there, or until a generous bound on a slow machine.
    let exported_all = |text: &str| {
        used.iter()
            .all(|name| text.contains(&format!("# TYPE {} ", family(name, text))))
    };
    server.wait_metrics(Duration::from_secs(120), exported_all);
    let exported = get(server.addr, "/metrics").2;
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

/// `Dockerfile.cuda` as stages of (instruction, arguments), line continuations joined
/// and heredoc bodies skipped; stage 0 is what comes before the first `FROM`.
fn dockerfile_stages() -> Vec<Vec<(String, String)>> {
    let text = std::fs::read_to_string(repo().join("Dockerfile.cuda")).unwrap();
    let mut stages: Vec<Vec<(String, String)>> = vec![Vec::new()];
    let mut joined = String::new();
    let mut heredoc: Option<String> = None;
    for line in text.lines() {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && joined.is_empty()) {
            continue;
        }
        joined.push_str(trimmed.trim_end_matches('\\'));
        joined.push(' ');
        if let Some(i) = trimmed.find("<<'") {
            heredoc = trimmed[i + 3..].split('\'').next().map(str::to_owned);
        }
        if trimmed.ends_with('\\') {
            continue;
        }
        let instruction = std::mem::take(&mut joined);
        let (op, rest) = instruction
            .trim()
            .split_once(' ')
            .unwrap_or((instruction.trim(), ""));
        if op == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .unwrap()
            .push((op.to_owned(), rest.trim().to_owned()));
    }
    stages
}

#[test]
fn the_cuda_image_builds_in_stages_and_runs_unprivileged_with_a_health_check() {
    let stages = dockerfile_stages();
    let preamble = &stages[0];
    let arg = |name: &str| {
        preamble
            .iter()
            .find_map(|(op, rest)| (op == "ARG").then(|| rest.strip_prefix(&format!("{name}=")))?)
            .unwrap_or_else(|| panic!("ARG {name} is not declared before the first FROM"))
            .to_owned()
    };
    let stages = &stages[1..];
    assert!(stages.len() >= 2, "multi-stage: {} stage(s)", stages.len());
    let from = |s: &[(String, String)]| s[0].1.clone();
    let build = stages
        .iter()
        .find(|s| from(s).ends_with("AS build"))
        .expect("a build stage");
    let runtime = stages.last().unwrap();
    // The build and the runtime are the same Ubuntu, so libavcodec's soname matches.
    assert!(from(build).contains("ubuntu:${UBUNTU}"), "{}", from(build));
    assert!(from(runtime).starts_with("nvidia/cuda:${CUDA}-cudnn-runtime-ubuntu${UBUNTU}"));
    assert!(
        build
            .iter()
            .any(|(op, rest)| op == "RUN" && rest.contains("cargo build --release --locked")),
        "the image builds what Cargo.lock pins"
    );
    // TensorRT's pinned build is for the runtime's CUDA major.
    let cuda_major = arg("CUDA").split('.').next().unwrap().to_owned();
    assert!(
        arg("TENSORRT").ends_with(&format!("+cuda{cuda_major}.0")),
        "{}",
        arg("TENSORRT")
    );

    let find = |op: &str| -> Vec<&String> {
        runtime
            .iter()
            .filter(|(o, _)| o == op)
            .map(|(_, rest)| rest)
            .collect()
    };
    let user = find("USER");
    let user = user.last().expect("the runtime stage sets USER");
    assert!(!["root", "0"].contains(&user.as_str()), "runs as {user}");
    let health = find("HEALTHCHECK");
    assert!(
        health.len() == 1 && health[0].contains("http://127.0.0.1:8080/healthz"),
        "{health:?}"
    );
    assert_eq!(find("EXPOSE"), ["8080"]);
    let cmd = find("CMD").last().copied().cloned().unwrap_or_default();
    assert!(
        cmd.contains("0.0.0.0:8080"),
        "the server listens where the health check looks: {cmd}"
    );
    let env = find("ENV")
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        env.contains("ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so"),
        "{env}"
    );
    assert!(
        find("COPY")
            .iter()
            .any(|c| c.contains("--from=onnxruntime") && c.ends_with("/opt/onnxruntime")),
        "ORT_DYLIB_PATH points at what the onnxruntime stage provides"
    );
    assert!(
        env.contains("NVIDIA_DRIVER_CAPABILITIES=compute,utility,video"),
        "NVDEC needs video: {env}"
    );
    let entry = find("ENTRYPOINT");
    assert_eq!(entry, [r#"["/usr/local/bin/kvs-infer"]"#]);
    assert!(find("COPY")
        .iter()
        .any(|c| c.contains("--from=build") && c.contains("/usr/local/bin/kvs-infer")));

    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    for path in ["target/", ".cache/", "bench/gpu-check/"] {
        assert!(
            ignore.lines().any(|l| l == path),
            ".dockerignore lacks {path}"
        );
    }
}
