//! The GPU path without a GPU: every CUDA kernel compiles with NVRTC (fetched by
//! `scripts/setup.sh --test` from the nvidia-cuda-nvrtc-cu12 wheel) for the GPUs we
//! target, a broken kernel fails with NVRTC's log, and the server on a machine without
//! a usable GPU says why and runs on the CPU, or refuses a GPU-only backend with exit 2.
//!
//! The GPU tests run on a GPU when there is one. Where there is none, they run anyway
//! on a fake CUDA driver (`tests/support/fake_cuda.cpp`: host memory for device
//! memory, our kernels run on the CPU), as does the GPU check: the whole host side of
//! the GPU path is exercised on every machine; only timing, concurrency and the GPU's
//! arithmetic wait for a real one.

mod common;

use common::{binary, skip, temp_dir};
use kvs_infer::gpu::kernels::{arch_for, compile_all, Image, SOURCES};
use kvs_infer::gpu::nvrtc::{Nvrtc, NvrtcError};

/// Turing (T4), Ampere (A100, A10G), Ada (L4), Hopper (H100).
const TARGETS: [(i32, i32); 5] = [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0)];

fn nvrtc() -> Option<Nvrtc> {
    match Nvrtc::load() {
        Ok(n) => Some(n),
        Err(e) => {
            skip(&e.to_string());
            None
        }
    }
}

#[test]
fn every_kernel_compiles_with_nvrtc_for_every_target_gpu() {
    let Some(nvrtc) = nvrtc() else { return };
    let (major, minor) = nvrtc.version();
    assert!(
        major >= 11,
        "NVRTC {major}.{minor} at {}",
        nvrtc.path().display()
    );
    for cc in TARGETS {
        let arch = arch_for(cc);
        let ptx = compile_all(&nvrtc, &arch).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ptx.len(), SOURCES.len());
        for (file, text) in ptx {
            assert!(
                text.contains(&format!(".target sm_{}{}", cc.0, cc.1)),
                "{file} for {arch}"
            );
        }
    }
}

#[test]
fn every_kernel_compiles_to_machine_code_and_both_images_are_cached() {
    let Some(_) = nvrtc() else { return };
    let dir = temp_dir("gpu-images");
    for cc in TARGETS {
        for kernel in SOURCES {
            let mut compiler = None;
            let images = kvs_infer::gpu::kernels::images_cached(&dir, kernel, cc, &mut compiler)
                .unwrap_or_else(|e| panic!("{e}"));
            match &images[..] {
                [Image::Cubin(cubin), Image::Ptx(ptx)] => {
                    // A cubin is an ELF image for exactly this GPU generation.
                    assert!(cubin.starts_with(b"\x7fELF"), "sm_{}{}", cc.0, cc.1);
                    assert!(ptx.contains(&format!(".target sm_{}{}", cc.0, cc.1)));
                }
                other => panic!("{:?}", other.iter().map(Image::kind).collect::<Vec<_>>()),
            }
            // Read back from the cache, with no compiler at hand.
            let mut none = None;
            let again =
                kvs_infer::gpu::kernels::images_cached(&dir, kernel, cc, &mut none).unwrap();
            assert_eq!(again, images);
            assert!(none.is_none(), "the cache served both images");
        }
    }
}

#[test]
fn a_kernel_that_does_not_compile_fails_with_nvrtcs_log() {
    let Some(nvrtc) = nvrtc() else { return };
    let broken = "extern \"C\" __global__ void k(float* out) { out[0] = undefined_name; }";
    match nvrtc.compile_ptx("broken.cu", broken, "compute_90") {
        Err(NvrtcError::Compile { name, log, .. }) => {
            assert_eq!(name, "broken.cu");
            assert!(log.contains("undefined_name"), "{log}");
        }
        other => panic!("{other:?}"),
    }
}

fn config(dir: &std::path::Path, backend: &str) -> String {
    let path = dir.join(format!("{backend}.toml"));
    std::fs::write(
        &path,
        format!(
            "[engine]\nbackend = \"{backend}\"\n[publishers.local]\ndir = \"out\"\n[cameras.s.synthetic]\nfps = 2\n[[cameras.s.detectors]]\ntype = \"yolo\"\nparams = {{ model_path = \"no-such-model.onnx\" }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn without_a_gpu_auto_says_why_and_gpu_backends_are_a_clear_start_up_error() {
    if kvs_infer::gpu::probe().is_available() {
        skip("this machine has a GPU; the no-GPU behaviour is not observable here");
        return;
    }
    let dir = temp_dir("gpu-fallback");
    // auto: the log says the CPU is used and why; start-up then stops at the missing
    // model (which is what makes this test quick).
    let out = binary()
        .args(["--config", &config(&dir, "auto"), "--http", "127.0.0.1:0"])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Using the CPU engine"))
        .unwrap_or_else(|| panic!("no backend line in {stdout}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["message"], "Using the CPU engine: no usable GPU.");
    assert!(
        v["gpu"].as_str().unwrap().contains("no CUDA driver"),
        "{line}"
    );
    for backend in ["cuda", "tensorrt"] {
        let out = binary()
            .args(["--config", &config(&dir, backend), "--http", "127.0.0.1:0"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{backend}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("engine.backend = \"{backend}\" cannot run"))
                && stderr.contains("no CUDA driver"),
            "{stderr}"
        );
    }
}

#[test]
fn on_a_gpu_the_kernels_match_the_cpu_reference_and_write_only_their_slot() {
    use kvs_infer::gpu::letterbox::{check_parity, GpuLetterbox};
    use kvs_infer::gpu::GpuStatus;
    let GpuStatus::Available { devices, .. } = kvs_infer::gpu::probe() else {
        skip("no GPU: run here on the fake driver instead (the_gpu_path_runs_whole_on_a_fake_driver…); on a real one by bench/gpu-check.sh");
        return;
    };
    let Some(nvrtc) = nvrtc() else { return };
    let arch = arch_for(devices[0].compute_capability);
    let ptx = compile_all(&nvrtc, &arch).unwrap_or_else(|e| panic!("{e}"));
    let gpu = GpuLetterbox::new(0, &ptx[0].1).unwrap_or_else(|e| panic!("{e}"));
    let rows = check_parity(&gpu, 1).unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = rows.iter().filter(|r| !r.pass).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // One launch for a batch of mixed sizes and layouts fills every slot the same way.
    let batch = kvs_infer::gpu::batch::check_batch(&gpu, 1).unwrap_or_else(|e| panic!("{e}"));
    assert!(batch.iter().all(|r| r.pass), "{batch:#?}");
    // The engine workers' path: staged, copied and launched on a stream of its own,
    // into a model input that is not square (so width and height cannot be swapped).
    let frames: Vec<_> = kvs_infer::gpu::letterbox::parity_cases()
        .into_iter()
        .map(|c| c.1)
        .collect();
    let refs: Vec<_> = frames.iter().collect();
    let cache = temp_dir("gpu-prep-kernels");
    let (w, h) = (640, 384);
    let mut prep = kvs_infer::gpu::prep::GpuPrep::new(0, w, h, &cache).unwrap();
    prep.prepare(&refs).unwrap();
    let got = prep.download(refs.len()).unwrap();
    let slot = 3 * (w * h) as usize;
    for (k, frame) in frames.iter().enumerate() {
        let mut want = vec![0f32; slot];
        kvs_infer::preprocess::cpu::letterbox_into(frame, w, h, &mut want);
        let err = kvs_infer::gpu::letterbox::max_abs_diff(&got[k * slot..(k + 1) * slot], &want);
        assert!(
            err <= kvs_infer::gpu::letterbox::F32_TOLERANCE,
            "slot {k}: {err}"
        );
    }
}

#[test]
fn on_a_gpu_the_candidate_kernel_finds_exactly_the_cpu_references_candidates() {
    use kvs_infer::gpu::candidates::{check_parity, GpuCandidates};
    if !kvs_infer::gpu::probe().is_available() {
        skip("no GPU: run here on the fake driver instead (the_gpu_path_runs_whole_on_a_fake_driver…); on a real one by bench/gpu-check.sh");
        return;
    }
    let cache = temp_dir("gpu-candidate-kernels");
    let mut gpu = GpuCandidates::new(0, &cache).unwrap_or_else(|e| panic!("{e}"));
    let rows = check_parity(&mut gpu, 1).unwrap_or_else(|e| panic!("{e}"));
    let failed: Vec<_> = rows.iter().filter(|r| !r.equal).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

/// The fake CUDA and NVDEC libraries, for a test that runs the GPU code on them;
/// `None` in a child already running on a driver, or (said) where NVRTC or the
/// fakes cannot be had.
fn fakes() -> Option<&'static common::Fakes> {
    if std::env::var_os("KVS_INFER_CUDA_DRIVER").is_some() {
        return None;
    }
    nvrtc()?;
    common::fakes().map_err(|why| skip(&why)).ok()
}

/// The GPU tests above run by name in a child process of this test binary.
const GPU_TESTS: [&str; 2] = [
    "on_a_gpu_the_kernels_match_the_cpu_reference_and_write_only_their_slot",
    "on_a_gpu_the_candidate_kernel_finds_exactly_the_cpu_references_candidates",
];

#[test]
fn the_gpu_path_runs_whole_on_a_fake_driver_that_runs_our_kernels_on_the_cpu() {
    let Some(fakes) = fakes() else { return };
    // The GPU tests of this file, on the fake: the probe finds it, and the driver
    // shim, the kernels' images, their arguments and grids, GPU preprocessing's
    // staging and the candidate stage's copies all run for real.
    common::run_tests_in_child(&GPU_TESTS, &[("KVS_INFER_CUDA_DRIVER", &fakes.cuda)]);

    // The GPU check itself (bench/gpu-check.sh's binary), run quickly; with no
    // prepared cache it compiles the kernels it needs with NVRTC.
    let Some(check) = std::env::current_exe()
        .ok()
        .and_then(|t| Some(t.parent()?.parent()?.join("examples/gpu_check")))
        .filter(|p| p.is_file())
    else {
        skip("the gpu_check example is not built (cargo build --example gpu_check; scripts/test.sh does)");
        return;
    };
    let dir = temp_dir("gpu-check-on-fake");
    // With a fake NVDEC too, and clips prepared as bench/gpu-check.sh --prepare does
    // (fragmented MP4, libavcodec's pictures hashed), the NVDEC section runs as well.
    let clips = dir.join("clips");
    std::fs::create_dir_all(&clips).unwrap();
    for (name, codec, tag) in [("h264", "libx264", "avc1"), ("h265", "libx265", "hvc1")] {
        let path = clips.join(format!("{name}.mp4"));
        let fragmented = "frag_keyframe+empty_moov+default_base_moof";
        common::test_clip(&path, codec, 2, &["-tag:v", tag, "-movflags", fragmented]);
        let clip = path.to_str().unwrap();
        let pictures = common::ffmpeg(&["-v", "error", "-i", clip, "-f", "rawvideo", "-"]);
        let mut hash = std::process::Command::new(&check)
            .arg("--hash-frames")
            .args(["320", "240"])
            .arg(clips.join(format!("{name}.ref")))
            .arg(clips.join(format!("{name}.frame0.yuv")))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        hash.stdin.take().unwrap().write_all(&pictures).unwrap();
        assert!(hash.wait().unwrap().success());
    }
    let out = std::process::Command::new(&check)
        .arg(&dir)
        .arg("--quick")
        .env("KVS_INFER_CUDA_DRIVER", &fakes.cuda)
        .env("KVS_INFER_NVCUVID", &fakes.nvcuvid)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    for section in [
        "## Kernels",
        "One launch per batch",
        "## GPU preprocessing",
        "## GPU candidate stage",
        "## NVDEC",
        "## Engines",
    ] {
        assert!(report.contains(section), "no {section:?} in {report}");
    }
    assert!(
        report.contains("| pass |") && !report.contains("FAIL"),
        "{report}"
    );
    for clip in [
        "| h264.mp4 | H264 | 320x240 | 50 | 50 |",
        "| h265.mp4 | H265 | 320x240 | 50 | 50 |",
    ] {
        assert!(report.contains(clip), "no {clip:?} in {report}");
    }
}

#[test]
fn the_engine_workers_gpu_path_runs_whole_on_the_fake_driver() {
    let Some(fakes) = fakes() else { return };
    const TEST: &str = "scheduler::worker::gpu_tests::on_a_gpu_the_worker_prepares_and_reduces_on_the_device_and_answers_as_the_cpu_does";
    let Some(library_tests) = common::library_tests(TEST) else {
        skip("the library's unit tests are not built (cargo test builds them)");
        return;
    };
    // GPU preprocessing into a device tensor, an engine reading it there and keeping
    // its output there, the candidate kernel: the worker's whole GPU path.
    common::run_tests_of(
        &library_tests,
        &[TEST],
        &[("KVS_INFER_CUDA_DRIVER", &fakes.cuda)],
    );
}

#[test]
fn compiled_kernels_are_cached_and_read_back_without_compiling() {
    use kvs_infer::gpu::kernels::{cache_path, ptx_cached};
    let Some(nvrtc) = nvrtc() else { return };
    let dir = temp_dir("kernel-cache");
    let kernel = &SOURCES[0];
    let mut compiler = Some(nvrtc);
    let ptx = ptx_cached(&dir, kernel, "compute_86", &mut compiler).unwrap();
    let path = cache_path(&dir, kernel, "compute_86");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), ptx);
    // A hit is read, not compiled: with no compiler at hand it still answers, and it
    // answers with what is in the file.
    std::fs::write(&path, format!("{ptx}// from the cache\n")).unwrap();
    let mut none = None;
    let again = ptx_cached(&dir, kernel, "compute_86", &mut none).unwrap();
    assert!(again.ends_with("// from the cache\n"));
    assert!(none.is_none(), "NVRTC was loaded for a cache hit");
}

#[test]
fn the_cpu_onnx_runtime_reports_no_gpu_providers_and_auto_says_so() {
    if kvs_infer::engine::onnx::runtime_library().is_err() {
        skip("ONNX Runtime is not installed (scripts/setup.sh)");
        return;
    }
    let caps = kvs_infer::engine::providers::host_caps();
    // The runtime setup.sh installs is the CPU build: it has neither provider, and says
    // where to look for one that has.
    for why in [&caps.cuda_ep_missing, &caps.trt_missing] {
        let why = why
            .as_deref()
            .expect("the CPU build of ONNX Runtime has no GPU provider");
        assert!(
            why.contains("has no") && why.contains("ORT_DYLIB_PATH"),
            "{why}"
        );
    }
    if caps.gpu_missing.is_none() {
        skip("this machine has a GPU; `auto` would weigh the providers");
        return;
    }
    let (choice, why) =
        kvs_infer::engine::accel::choose(kvs_infer::config::Backend::Auto, &caps).unwrap();
    assert_eq!(choice, kvs_infer::engine::accel::Choice::Cpu);
    assert_eq!(why.as_deref(), Some("no usable GPU"));
}

#[test]
fn build_engine_without_a_gpu_or_a_model_exits_2_with_the_reason() {
    let dir = temp_dir("build-engine");
    let out = binary()
        .args(["build-engine", "--model", "missing.onnx"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing.onnx: file not found"), "{stderr}");

    if kvs_infer::gpu::probe().is_available() {
        skip("this machine has a GPU; bench/gpu-check.sh builds an engine there");
        return;
    }
    let Some(model) = common::fixture("models/yolov8n-coco.onnx") else {
        skip("no yolov8n-coco.onnx (scripts/fetch-assets.sh)");
        return;
    };
    let out = binary()
        .args(["build-engine", "--model"])
        .arg(&model)
        .args(["--max-batch", "8", "--fp16", "--engines-dir"])
        .arg(dir.join("engines"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot build a TensorRT engine here") && stderr.contains("no CUDA driver"),
        "{stderr}"
    );
    assert!(
        !dir.join("engines").exists(),
        "nothing is cached when nothing was built"
    );
}

#[test]
fn bench_on_a_gpu_backend_without_a_gpu_exits_2_with_the_reason() {
    if kvs_infer::gpu::probe().is_available() {
        skip("this machine has a GPU; `kvs-infer bench --backend tensorrt` measures it");
        return;
    }
    let (Some(model), Some(clip)) = (
        common::fixture("models/yolov8n-coco.onnx"),
        common::fixture("video/person-motorcycle-720p.mp4"),
    ) else {
        skip("no yolov8n-coco.onnx or demo clip (scripts/fetch-assets.sh)");
        return;
    };
    let out = binary()
        .args([
            "bench",
            "--quick",
            "--backend",
            "tensorrt",
            "--decode",
            "nvdec",
            "--model",
        ])
        .arg(&model)
        .arg("--clip")
        .arg(&clip)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--backend tensorrt: no CUDA driver"),
        "{stderr}"
    );
    let out = binary()
        .args(["bench", "--backend", "opencl"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown backend \"opencl\""), "{stderr}");
}
