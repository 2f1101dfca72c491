//! Helpers shared by the integration tests: the real binary, temp dirs, a running
//! server whose JSON log lines are collected, and a minimal HTTP/1.1 GET.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `kvs-infer` binary cargo built for these tests.
pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kvs-infer"));
    cmd.env_remove("LOG_LEVEL")
        .env_remove("KVS_INFER_CONFIG")
        .env_remove("KVS_INFER_HTTP");
    cmd
}

/// The repository root (where `config/` lives).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kvs-infer-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running server and the JSON log lines it has printed so far.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    lines: mpsc::Receiver<String>,
    pub log: Vec<serde_json::Value>,
}

impl Server {
    /// Starts the binary with `args` (plus `--http 127.0.0.1:0`) in `cwd` and waits
    /// for its "Server listening." line.
    pub fn start(args: &[&str], cwd: &Path) -> Server {
        Self::start_with_env(args, cwd, &[])
    }

    /// [`Server::start`] with extra environment variables for the child.
    pub fn start_with_env(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Server {
        let mut child = binary()
            .envs(env.iter().copied())
            .args(args)
            .args(["--http", "127.0.0.1:0"])
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kvs-infer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            lines: rx,
            log: Vec::new(),
        };
        let line = server
            .wait_for_message("Server listening.", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("server never listened; log: {:#?}", server.log));
        server.addr = line["addr"].as_str().unwrap().parse().unwrap();
        server
    }

    /// Collects log lines until one has `message == wanted`, or the timeout passes.
    pub fn wait_for_message(
        &mut self,
        wanted: &str,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            self.log.push(value.clone());
            if value["message"] == wanted {
                return Some(value);
            }
        }
    }

    /// Waits until at least `count` collected log lines have `message == wanted`
    /// (counting lines already collected); returns the last one.
    pub fn wait_for_count(
        &mut self,
        wanted: &str,
        count: usize,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let end = Instant::now() + timeout;
        loop {
            let seen: Vec<&serde_json::Value> =
                self.log.iter().filter(|l| l["message"] == wanted).collect();
            if seen.len() >= count {
                return seen.last().map(|v| (*v).clone());
            }
            let left = end.checked_duration_since(Instant::now())?;
            self.wait_for_message(wanted, left)?;
        }
    }

    /// Sends `signal` to the server process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we spawned and still own; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, at most `timeout`; drains the rest of its log.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    if let Ok(v) = serde_json::from_str(&line) {
                        self.log.push(v);
                    }
                }
                return Some(status);
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log collected so far, one JSON line per entry (for assertion messages).
    pub fn log_text(&self) -> String {
        self.log
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `/metrics` until `check` holds on its text (true) or `timeout` passes.
    pub fn wait_metrics(&self, timeout: Duration, check: impl Fn(&str) -> bool) -> bool {
        wait_until(timeout, || check(&get(self.addr, "/metrics").2))
    }

    /// Polls `/metrics` until the frames run, events and batches stop changing (five
    /// reads half a second apart agree) or `timeout` passes; returns the last text.
    /// For a server whose sources have ended, this is when its last batches are done.
    pub fn wait_settled(&self, timeout: Duration) -> String {
        let progress = |text: &str| -> String {
            text.lines()
                .filter(|l| {
                    l.starts_with("infer_frames_total")
                        || l.starts_with("infer_events_total")
                        || l.starts_with("scheduler_batch_size_count")
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let end = Instant::now() + timeout;
        let mut text = get(self.addr, "/metrics").2;
        let mut same = 0;
        while same < 4 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(500));
            let next = get(self.addr, "/metrics").2;
            same = if progress(&next) == progress(&text) {
                same + 1
            } else {
                0
            };
            text = next;
        }
        text
    }

    /// Whether any collected log line has this message.
    pub fn logged(&self, message: &str) -> bool {
        self.log.iter().any(|l| l["message"] == message)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: (status, content-type, body).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, content_type, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A fixture file: `../shared/fixtures/<relative>` first, then what
/// `scripts/fetch-assets.sh` put in `.cache/demo/` or `.cache/models/`. When neither exists the test is
/// skipped loudly: the reason goes to stderr and to `target/test-skips.log`, which
/// `scripts/test.sh` prints at the end of the run.
pub fn fixture(relative: &str) -> Option<PathBuf> {
    let shared = repo().join("../shared/fixtures").join(relative);
    if shared.is_file() {
        return Some(shared);
    }
    let name = Path::new(relative).file_name().unwrap();
    for dir in [".cache/demo", ".cache/models"] {
        let fetched = repo().join(dir).join(name);
        if fetched.is_file() {
            return Some(fetched);
        }
    }
    skip(&format!("fixture {relative} not found in ../shared/fixtures, .cache/demo or .cache/models (run scripts/fetch-assets.sh)"));
    None
}

/// Records a loud skip for this test.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    let line = format!("SKIPPED {test}: {reason}\n");
    eprint!("{line}");
    let log = repo().join("target/test-skips.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Links the demo's model and clip into `dir/.cache/demo/`, as the embedded demo
/// config expects them relative to the working directory.
pub fn stage_demo_assets(dir: &Path) -> Option<()> {
    let model = fixture("models/yolov8n-coco.onnx")?;
    let clip = fixture("video/person-motorcycle-720p.mp4")?;
    let demo = dir.join(".cache/demo");
    std::fs::create_dir_all(&demo).unwrap();
    std::os::unix::fs::symlink(model, demo.join("yolov8n-coco.onnx")).unwrap();
    std::os::unix::fs::symlink(clip, demo.join("person-motorcycle-720p.mp4")).unwrap();
    Some(())
}

/// Events of one camera in `events.jsonl` under `dir`.
pub fn camera_events(dir: &Path, camera: &str) -> Vec<serde_json::Value> {
    read_events(dir)
        .into_iter()
        .filter(|e| e["camera_id"] == camera)
        .collect()
}

/// Every detection label in `events`.
pub fn labels(events: &[serde_json::Value]) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .flat_map(|e| e["detections"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| d["label"].as_str().map(str::to_owned))
        .collect()
}

/// Polls `check` every 200 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, check: impl Fn() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// Reads `events.jsonl` under `dir`.
pub fn read_events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("events.jsonl line is JSON"))
        .collect()
}

/// The value of a Prometheus sample line `name{labels} value` (labels as written).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// `worker_alive` for `camera` in `/metrics` text.
pub fn worker_alive(text: &str, camera: &str) -> Option<f64> {
    metric(text, &format!("worker_alive{{camera_id=\"{camera}\"}}"))
}

/// The mean batch size `model`'s queue formed, from `/metrics` text.
pub fn mean_batch(metrics_text: &str, model: &str) -> f64 {
    let count = metric(
        metrics_text,
        &format!("scheduler_batch_size_count{{model=\"{model}\"}}"),
    );
    let sum = metric(
        metrics_text,
        &format!("scheduler_batch_size_sum{{model=\"{model}\"}}"),
    );
    sum.unwrap_or(0.0) / count.unwrap_or(f64::NAN)
}

/// Builds `main`, a C++ file of `tests/support`, into a shared library in a fresh
/// temp dir, with our kernel sources (as NVRTC gets them) and the other support files
/// beside it, using the host's C++ compiler and `extra` arguments (libraries to link).
/// `Err` (to report as a skip) where there is no C++ compiler; a build error panics
/// with the compiler's output.
pub fn build_support_library(name: &str, main: &str, extra: &[&str]) -> Result<PathBuf, String> {
    let Some(cxx) = ["c++", "clang++", "g++"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        return Err("no C++ compiler (c++, clang++ or g++)".into());
    };
    let dir = temp_dir(name);
    for kernel in kvs_infer::gpu::kernels::SOURCES {
        std::fs::write(dir.join(kernel.file), kernel.source).unwrap();
    }
    for (file, text) in [
        (
            "cuda_on_cpu.cpp",
            include_str!("../support/cuda_on_cpu.cpp"),
        ),
        ("fake_cuda.cpp", include_str!("../support/fake_cuda.cpp")),
        (
            "fake_nvcuvid.cpp",
            include_str!("../support/fake_nvcuvid.cpp"),
        ),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let lib = dir.join(format!("lib{name}.so"));
    let out = Command::new(cxx)
        .args([
            "-std=c++17",
            "-O2",
            "-ffp-contract=off",
            "-fPIC",
            "-shared",
            "-o",
        ])
        .arg(&lib)
        .arg(dir.join(main))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cxx} could not build {main}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(lib)
}

/// The fake CUDA driver and fake NVDEC (`tests/support/fake_*.cpp`).
pub struct Fakes {
    /// For `KVS_INFER_CUDA_DRIVER`.
    pub cuda: PathBuf,
    /// For `KVS_INFER_NVCUVID`.
    pub nvcuvid: PathBuf,
}

/// The fakes, built once per test process: tests running at once share one build
/// (each building its own into the same directory would pull it from under the
/// other). `Err` (a skip) where this machine cannot build them.
pub fn fakes() -> Result<&'static Fakes, String> {
    static BUILT: std::sync::OnceLock<Result<Fakes, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if !Path::new("/usr/include/ffnvcodec/dynlink_cuda.h").is_file() {
                return Err(
                    "no nv-codec-headers to build the fakes against (scripts/setup.sh --test)"
                        .into(),
                );
            }
            Ok(Fakes {
                cuda: build_support_library("fake-cuda", "fake_cuda.cpp", &[])?,
                nvcuvid: build_support_library(
                    "fake-nvcuvid",
                    "fake_nvcuvid.cpp",
                    &["-lavcodec", "-lavutil"],
                )?,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `tests`, by exact name, in a child process of this test binary with `env`
/// set (the fake libraries), and checks that every one ran and passed: none may skip.
pub fn run_tests_in_child(tests: &[&str], env: &[(&str, &Path)]) {
    run_tests_of(&std::env::current_exe().unwrap(), tests, env);
}

/// The library's unit-test binary of this build that has `test` (of the
/// `kvs_infer-*` beside this test binary, the newest that lists it), if it was built.
/// `cargo test` builds every test binary before it runs any; `cargo test --test X`
/// alone may find one older than the source.
pub fn library_tests(test: &str) -> Option<PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let mut found: Vec<_> = std::fs::read_dir(deps)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("kvs_infer-") && !name.contains('.')
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    found.sort();
    found.into_iter().rev().map(|(_, path)| path).find(|path| {
        Command::new(path)
            .args(["--list", "--exact", test])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{test}: test")))
    })
}

/// [`run_tests_in_child`] for the test binary `binary`.
pub fn run_tests_of(binary: &Path, tests: &[&str], env: &[(&str, &Path)]) {
    let mut child = Command::new(binary);
    child.args(tests).args(["--exact", "--nocapture"]);
    for (key, value) in env {
        child.env(key, value);
    }
    let out = child.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("test result: ok. {} passed", tests.len())),
        "{text}"
    );
    assert!(!text.contains("SKIPPED"), "{text}");
}

/// A clip of ffmpeg's `testsrc2` (320×240, 25 fps, 4:2:0) for `seconds`, encoded with
/// `codec` into `path`; `extra` are further output options (GOP, tags, fragmenting).
pub fn test_clip(path: &Path, codec: &str, seconds: u32, extra: &[&str]) {
    let seconds = seconds.to_string();
    let mut args = vec![
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-t",
        &seconds,
        "-c:v",
        codec,
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(extra);
    args.push(path.to_str().expect("a UTF-8 path"));
    ffmpeg(&args);
}

/// ffmpeg's standard output for `args`; its error output is the failure message.
pub fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = Command::new("ffmpeg").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
