//! The GPU check `bench/gpu-check.sh` runs.
//!
//! - `gpu_check --prepare DIR` (here, no GPU needed): compiles the kernels with NVRTC
//!   for every GPU generation we target, as cubins (which load on any driver of NVRTC's
//!   CUDA major) and PTX (which needs a driver as new as NVRTC), into the cache
//!   `DIR/kernels`, so a GPU host without NVRTC can run them.
//! - `gpu_check --hash-frames W H REF FRAME0` (here): reads raw I420 pictures from stdin
//!   (libavcodec's decode of a clip, piped from the ffmpeg CLI) and writes one hash per
//!   picture to REF and the first picture to FRAME0: what NVDEC's output is compared
//!   with on the GPU host, where there is no libavcodec.
//! - `gpu_check DIR` (on the GPU host): the probe; kernel parity with the CPU reference
//!   and time per launch; one launch per batch against one per frame; the YOLO
//!   candidate kernel against its CPU reference; NVDEC on the
//!   clips in `DIR/clips` (bit-exactness, NV12 surfaces into the kernel without a host
//!   copy, throughput); TensorRT and CUDA engines against the CPU engine
//!   (`DIR/yolov8n-coco.onnx`), each as a markdown table. Each section runs in a
//!   process of its own with a time limit (`gpu_check DIR --section NAME` runs one), so
//!   one that crashes or hangs costs only itself. `--quick` runs every check once and
//!   every rate briefly: a smoke run, not a measurement. Exits 1 when a check fails,
//!   2 without a GPU.
//!
//! The binary links nothing but libc: CUDA, NVDEC and ONNX Runtime are opened at run
//! time, so it runs on a bare GPU host.

mod decode;
mod engine;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use kvs_infer::gpu::batch::check_batch;
use kvs_infer::gpu::kernels::{images_cached, PREPROCESS, SOURCES};
use kvs_infer::gpu::letterbox::{check_parity, GpuLetterbox, F16_TOLERANCE_ULP, F32_TOLERANCE};
use kvs_infer::gpu::GpuStatus;

/// Turing (T4), Ampere (A100, A10G), Ada (L4), Hopper (H100).
const TARGETS: [(i32, i32); 5] = [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0)];

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    println!("| {what} | FAIL: {e} |");
    std::process::exit(1);
}

/// `--quick`: every check once and every rate briefly, to see that the check works
/// end to end (the tests run it on a fake driver) rather than to measure.
static QUICK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quick() -> bool {
    QUICK.load(std::sync::atomic::Ordering::Relaxed)
}

/// Timed repetitions of a check: 100, or 1 with `--quick`.
fn runs() -> usize {
    if quick() {
        1
    } else {
        100
    }
}

/// Seconds a rate is measured over: 2, or a tenth of one with `--quick`.
fn rate_seconds() -> f64 {
    if quick() {
        0.1
    } else {
        2.0
    }
}

/// Images per second through `run`, which handles `batch` images a call: one call to
/// warm up, then as many as fit in [`rate_seconds`].
fn rate(batch: usize, mut run: impl FnMut() -> Result<(), String>) -> Result<f64, String> {
    run()?;
    let started = Instant::now();
    let mut images = 0;
    while started.elapsed() < Duration::from_secs_f64(rate_seconds()) {
        run()?;
        images += batch;
    }
    Ok(images as f64 / started.elapsed().as_secs_f64())
}

fn prepare(dir: &Path) {
    let kernels = dir.join("kernels");
    let mut nvrtc = None;
    for cc in TARGETS {
        for kernel in SOURCES {
            match images_cached(&kernels, kernel, cc, &mut nvrtc) {
                Ok(images) if images.len() == 2 => {}
                Ok(_) => fail(
                    "kernels compile",
                    format!("sm_{}{}: a cubin or PTX is missing", cc.0, cc.1),
                ),
                Err(e) => fail("kernels compile", e),
            }
        }
    }
    println!(
        "cubins and PTX for {} architectures cached in {}",
        TARGETS.len(),
        kernels.display()
    );
}

fn hash_frames(args: &[String]) {
    let [w, h, refs, frame0] = args else {
        fail("usage", "--hash-frames W H REF FRAME0");
    };
    let (w, h): (usize, usize) = (w.parse().unwrap_or(0), h.parse().unwrap_or(0));
    let (luma, chroma) = (w * h, w * h / 4);
    let mut picture = vec![0u8; luma + 2 * chroma];
    let mut stdin = std::io::stdin().lock();
    let mut out = std::fs::File::create(refs).unwrap_or_else(|e| fail("hash-frames", e));
    let mut count = 0;
    while stdin.read_exact(&mut picture).is_ok() {
        let (y, uv) = picture.split_at(luma);
        let (u, v) = uv.split_at(chroma);
        writeln!(out, "{:016x}", decode::frame_hash([y, u, v]))
            .unwrap_or_else(|e| fail("hash-frames", e));
        if count == 0 {
            std::fs::write(frame0, &picture).unwrap_or_else(|e| fail("hash-frames", e));
        }
        count += 1;
    }
    println!("{count} pictures hashed into {refs}");
}

fn kernels(gpu: &GpuLetterbox) -> bool {
    let rows = match check_parity(gpu, runs()) {
        Ok(rows) => rows,
        Err(e) => {
            println!("\n## Kernels\n\nkernel parity: FAIL: {e}");
            return false;
        }
    };
    println!(
        "\n## Kernels\n\nParity with the CPU reference (tolerance: fp32 {F32_TOLERANCE}, fp16 \
         {F16_TOLERANCE_ULP} ulp), slot 1 of a batch of 2:\n"
    );
    println!(
        "| case | layout | type | max error | other slot untouched | µs per launch | result |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:?} | {:?} | {:.2e} | {} | {:.1} | {} |",
            r.case,
            r.layout,
            r.precision,
            r.max_error,
            r.other_slot_untouched,
            r.micros,
            if r.pass { "pass" } else { "FAIL" }
        );
    }
    let batch = match check_batch(gpu, runs()) {
        Ok(rows) => rows,
        Err(e) => {
            println!("\nbatch kernel: FAIL: {e}");
            return false;
        }
    };
    println!("\nOne launch per batch against one per frame (the parity frames, I420 and NV12 alternating, into 640×640):\n");
    println!("| type | frames | max error | µs per batch, one launch | µs per batch, launch per frame | result |");
    println!("|---|---|---|---|---|---|");
    for r in &batch {
        println!(
            "| {:?} | {} | {:.2e} | {:.1} | {:.1} | {} |",
            r.precision,
            r.batch,
            r.max_error,
            r.micros_batched,
            r.micros_per_frame,
            if r.pass { "pass" } else { "FAIL" }
        );
    }
    rows.iter().all(|r| r.pass) && batch.iter().all(|r| r.pass)
}

/// The engine workers' GPU preprocessing (pinned staging, their own streams): parity of
/// a batch of 8 mixed frames, and frames/s with 1 and 2 workers preparing at once.
fn preprocessing(kernels: &Path) -> bool {
    use kvs_infer::decode::Frame;
    use kvs_infer::gpu::letterbox::{max_abs_diff, parity_cases, reference, Precision, SlotData};
    use kvs_infer::gpu::prep::GpuPrep;
    println!("\n## GPU preprocessing (engine workers)\n");
    let frames: Vec<Frame> = parity_cases()
        .into_iter()
        .map(|c| c.1)
        .cycle()
        .take(8)
        .collect();
    let refs: Vec<&Frame> = frames.iter().collect();
    let run = || -> Result<(f32, f64), String> {
        let mut prep = GpuPrep::new(0, 640, 640, kernels)?;
        prep.prepare(&refs).map_err(|e| e.to_string())?;
        let got = prep.download(refs.len()).map_err(|e| e.to_string())?;
        let slot = 3 * 640 * 640;
        let mut err = 0f32;
        for (k, f) in refs.iter().enumerate() {
            if let SlotData::F32(want) = reference(f, 640, 640, Precision::F32) {
                err = err.max(max_abs_diff(&got[k * slot..(k + 1) * slot], &want));
            }
        }
        let fps = rate(refs.len(), || {
            prep.prepare(&refs).map(drop).map_err(|e| e.to_string())
        })?;
        Ok((err, fps))
    };
    let one = run();
    let two: Vec<Result<(f32, f64), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(run)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err("panicked".into())))
            .collect()
    });
    match (one, two.into_iter().collect::<Result<Vec<_>, _>>()) {
        (Ok((err, fps1)), Ok(two)) => {
            let fps2: f64 = two.iter().map(|r| r.1).sum();
            let err = two.iter().map(|r| r.0).fold(err, f32::max);
            let pass = err <= F32_TOLERANCE;
            println!("| batch | max error | frames/s, 1 worker | frames/s, 2 workers | result |");
            println!("|---|---|---|---|---|");
            println!(
                "| 8 mixed (1080p…160p) | {err:.2e} | {fps1:.0} | {fps2:.0} | {} |",
                if pass { "pass" } else { "FAIL" }
            );
            pass
        }
        (Err(e), _) | (_, Err(e)) => {
            println!("FAIL: {e}");
            false
        }
    }
}

/// The YOLO candidate kernel against `yolo::candidates`: bit-exact lists on synthetic
/// outputs full of ties, µs per batch, and the bytes that come back.
fn candidates(kernels: &Path) -> bool {
    use kvs_infer::gpu::candidates::{check_parity, GpuCandidates};
    println!("\n## GPU candidate stage (detector outputs)\n");
    let rows = GpuCandidates::new(0, kernels)
        .and_then(|mut gpu| check_parity(&mut gpu, runs()).map_err(|e| e.to_string()));
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            println!("FAIL: {e}");
            return false;
        }
    };
    println!(
        "| case | output | candidates | equal to the CPU's | µs per batch | bytes back | of |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {}×{}×{} | {} | {} | {:.1} | {} | {} |",
            r.name,
            r.dims.batch,
            r.dims.channels,
            r.dims.anchors,
            r.candidates,
            if r.equal { "yes" } else { "NO: FAIL" },
            r.micros,
            r.bytes_back,
            r.bytes_full
        );
    }
    rows.iter().all(|r| r.equal)
}

/// The sections, in order, with how long each may take (seconds): together well
/// inside the device tool's 10 minutes a call.
const SECTIONS: [(&str, u64); 5] = [
    ("kernels", 90),
    ("preprocessing", 60),
    ("candidates", 60),
    ("nvdec", 180),
    ("engines", 150),
];

/// The preprocessing kernels for this GPU, from the cache `--prepare` made (or NVRTC);
/// `None` when none loads. With `say`, a line tells which image loaded, or why none.
fn letterbox_kernels(kernels: &Path, cc: (i32, i32), say: bool) -> Option<GpuLetterbox> {
    let mut nvrtc = None;
    let loaded = images_cached(kernels, &PREPROCESS, cc, &mut nvrtc)
        .map_err(|e| e.to_string())
        .and_then(|images| GpuLetterbox::load(0, &images).map_err(|e| e.to_string()));
    match loaded {
        Ok((gpu, kind)) => {
            let from = match nvrtc {
                Some(_) => "compiled here with NVRTC",
                None => "from the cache made by --prepare",
            };
            if say {
                println!("Kernels for sm_{}{}: {kind} ({from})", cc.0, cc.1);
            }
            Some(gpu)
        }
        Err(e) => {
            if say {
                println!("Kernels for sm_{}{}: FAIL: {e}", cc.0, cc.1);
            }
            None
        }
    }
}

/// Runs one section in this process; false when a check failed.
fn section(name: &str, dir: &Path, cc: (i32, i32)) -> bool {
    let kernels_dir = dir.join("kernels");
    match name {
        "kernels" => letterbox_kernels(&kernels_dir, cc, true).is_some_and(|gpu| kernels(&gpu)),
        "preprocessing" => preprocessing(&kernels_dir),
        "candidates" => candidates(&kernels_dir),
        "nvdec" => {
            // Without the kernels, NVDEC's own checks still run.
            let gpu = letterbox_kernels(&kernels_dir, cc, false);
            decode::section(gpu.as_ref(), &dir.join("clips"), &kernels_dir)
        }
        "engines" => engine::section(
            &dir.join("yolov8n-coco.onnx"),
            &dir.join("clips/h264.mp4"),
            &dir.join("engines"),
            &kernels_dir,
        ),
        other => {
            println!("no section {other:?}");
            false
        }
    }
}

/// Runs `name` in a child process of this binary, so a section that crashes (FFI
/// code meeting a GPU for the first time) or hangs costs only itself: GPU time is too
/// rare to lose the rest. False when it failed, crashed or ran out of time.
fn isolated(name: &str, dir: &Path, limit_s: u64) -> bool {
    use std::process::Command;
    let started = Instant::now();
    let child = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .arg(dir)
            .args(["--section", name])
            .args(quick().then_some("--quick"))
            .spawn()
    });
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            println!("\n{name}: FAIL: cannot start: {e}");
            return false;
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return true,
            Ok(Some(status)) => {
                use std::os::unix::process::ExitStatusExt;
                if let Some(signal) = status.signal() {
                    println!("\n{name}: FAIL: crashed (signal {signal})");
                }
                return false;
            }
            Ok(None) if started.elapsed() > Duration::from_secs(limit_s) => {
                let _ = child.kill();
                let _ = child.wait();
                println!("\n{name}: FAIL: still running after {limit_s} s; stopped");
                return false;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                println!("\n{name}: FAIL: {e}");
                return false;
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--prepare") => {
            prepare(Path::new(
                args.get(1).map_or("bench/gpu-check", String::as_str),
            ));
            return;
        }
        Some("--hash-frames") => {
            hash_frames(&args[1..]);
            return;
        }
        _ => {}
    }
    let dir = Path::new(args.first().map_or("bench/gpu-check", String::as_str));
    QUICK.store(
        args.iter().any(|a| a == "--quick"),
        std::sync::atomic::Ordering::Relaxed,
    );
    let only = args
        .iter()
        .position(|a| a == "--section")
        .and_then(|i| args.get(i + 1));
    let status = kvs_infer::gpu::probe();
    if only.is_none() {
        println!("GPU: {}", status.summary());
    }
    let GpuStatus::Available { devices, .. } = status else {
        std::process::exit(2);
    };
    let cc = devices[0].compute_capability;
    if let Some(name) = only {
        let ok = section(name, dir, cc);
        let _ = std::io::stdout().flush();
        std::process::exit(if ok { 0 } else { 1 });
    }
    let mut ok = true;
    for (name, limit_s) in SECTIONS {
        let _ = std::io::stdout().flush();
        ok &= isolated(name, dir, limit_s);
    }
    let _ = std::io::stdout().flush();
    if !ok {
        std::process::exit(1);
    }
}
