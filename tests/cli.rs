//! The command line as a user meets it: check-config on good and bad configs, bad flags,
//! unreadable files, and bad LOG_LEVEL — each a clear message and the right exit code.

mod common;

use common::{binary, repo};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = binary().args(args).current_dir(repo()).output().unwrap();
    (
        out.status.code().expect("exited normally"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_config_accepts_the_seed_yaml_with_onnx_models() {
    let (code, stdout, stderr) = run(&["check-config", "--config", "config/cameras.yaml"]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("valid (3 camera(s), 2 enabled)"),
        "{stdout}"
    );
}

#[test]
fn check_config_accepts_every_shipped_config() {
    for entry in std::fs::read_dir(repo().join("config")).unwrap() {
        let path = entry.unwrap().path();
        let (code, stdout, stderr) = run(&["check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {stdout}{stderr}", path.display());
    }
}

#[test]
fn the_seed_flow_style_yaml_loads_and_pt_models_get_the_export_command() {
    let (code, _, stderr) = run(&[
        "check-config",
        "--config",
        "tests/data/seed-flow-style.yaml",
    ]);
    assert_eq!(code, 2, "{stderr}");
    let problems: Vec<&str> = stderr.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(problems.len(), 3, "{stderr}");
    assert!(stderr.contains(
        "cameras.camera_1.detectors[0].params.model_path: models/weapon-yolov8n.pt is a PyTorch checkpoint"
    ));
    assert!(stderr
        .contains("yolo export model=models/license-plate-yolov8n.pt format=onnx dynamic=True"));
}

#[test]
fn three_mistakes_print_three_errors_and_exit_2() {
    let (code, stdout, stderr) =
        run(&["check-config", "--config", "tests/data/three-mistakes.toml"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "kvs-infer: error: config file tests/data/three-mistakes.toml has 3 problem(s)",
            "  cameras.camera_1.detectors[0].params.conf_threshold: 1.5 is not in 0..=1",
            "  cameras.camera_1.file.looping: unknown field `looping`, expected one of `path`, `loop`, `realtime`",
            "  publishers.kds.batch_size: 900 is not in 1..=500",
        ]
    );
}

#[test]
fn bad_flags_are_one_line_and_exit_2() {
    let (code, stdout, stderr) = run(&["--no-such-flag"]);
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("kvs-infer: error: unexpected argument '--no-such-flag'"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["--http", "not-an-address"]);
    assert_eq!(code, 2);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not-an-address"), "{stderr}");
}

#[test]
fn unreadable_or_unknown_files_are_one_line_and_exit_2() {
    for (args, want) in [
        (
            vec!["check-config", "--config", "nope/missing.toml"],
            "cannot read config file nope/missing.toml",
        ),
        (
            vec!["--config", "nope/missing.yaml"],
            "cannot read config file nope/missing.yaml",
        ),
        (
            vec!["check-config", "--config", "Cargo.lock"],
            "must end in .toml, .yaml or .yml",
        ),
    ] {
        let (code, _, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn an_unknown_log_level_is_refused_with_the_accepted_names() {
    let out = binary()
        .env("LOG_LEVEL", "LOUD")
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("LOG_LEVEL=\"LOUD\" is not a log level"),
        "{stderr}"
    );
}

#[test]
fn help_and_version_exit_0() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("check-config"), "{stdout}");
    assert!(stdout.contains("--http <ADDR>"), "{stdout}");
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("kvs-infer 0.1.0"), "{stdout}");
}
