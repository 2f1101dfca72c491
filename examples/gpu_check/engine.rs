//! The engine section: YOLOv8n through ONNX Runtime's TensorRT (fp16) and CUDA
//! providers, checked against the CPU engine on the same real picture (the first of the
//! H.264 clip, which shows people and a motorcycle) as input (from host memory, and
//! letterboxed by our kernel into device memory as the server does), images/s at
//! batch 1, 8 and 32, and the server's GPU path end to end at batch 8: with the output
//! brought back whole, and with it kept on the device and reduced there to candidates
//! (which must be the host's). Runs where the host has a GPU build of ONNX Runtime
//! (`ORT_DYLIB_PATH`) and, for TensorRT, `libnvinfer`; otherwise says which is missing.

use std::path::Path;
use std::time::Instant;

use kvs_infer::config::Backend;
use kvs_infer::decode::{ColorMatrix, Frame};
use kvs_infer::engine::onnx::OrtEngine;
use kvs_infer::engine::providers::Placement;
use kvs_infer::engine::{BatchInput, BatchOutput, Engine, ModelKind};
use kvs_infer::gpu::candidates::GpuCandidates;
use kvs_infer::gpu::prep::GpuPrep;
use kvs_infer::postprocess::yolo::{candidates, Candidate};

use super::rate;

/// The picture the engines see: the first of `clip`, as `--prepare` wrote it beside
/// the clip (I420, BT.709), at the size the clip's container gives.
fn picture(clip: &Path) -> Result<Frame, String> {
    let (info, _) = super::decode::demux(clip)?;
    let path = clip.with_extension("frame0.yuv");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (luma, chroma) = (
        (info.width * info.height) as usize,
        (info.width * info.height / 4) as usize,
    );
    if luma == 0 || luma + 2 * chroma != bytes.len() {
        return Err(format!(
            "{} is not one {}x{} I420 picture",
            path.display(),
            info.width,
            info.height
        ));
    }
    let planes = [
        bytes[..luma].to_vec(),
        bytes[luma..luma + chroma].to_vec(),
        bytes[luma + chroma..].to_vec(),
    ];
    Ok(Frame::from_planes(
        info.width,
        info.height,
        0,
        Instant::now(),
        0,
        ColorMatrix::Bt709,
        planes,
    ))
}

fn input(frame: &Frame, batch: usize) -> Vec<f32> {
    let mut slot = vec![0f32; 3 * 640 * 640];
    kvs_infer::preprocess::cpu::letterbox_into(frame, 640, 640, &mut slot);
    slot.repeat(batch)
}

/// The server's GPU path for one batch of `batch` frames: our kernel letterboxes them
/// into a device tensor that the engine reads where it lies.
fn on_device(
    engine: &mut OrtEngine,
    prep: &mut GpuPrep,
    frame: &Frame,
    batch: usize,
    out: &mut BatchOutput,
) -> Result<(), String> {
    let frames = vec![frame; batch];
    let (tensor, _) = prep.prepare(&frames).map_err(|e| e.to_string())?;
    engine
        .run_device(tensor, batch, out)
        .map_err(|e| e.to_string())
}

/// The server's GPU path with the output kept on the device: each image's candidates.
fn on_device_kept(
    engine: &mut OrtEngine,
    prep: &mut GpuPrep,
    post: &mut GpuCandidates,
    frame: &Frame,
    batch: usize,
) -> Result<Vec<Vec<Candidate>>, String> {
    let frames = vec![frame; batch];
    let (tensor, _) = prep.prepare(&frames).map_err(|e| e.to_string())?;
    let mut unused = BatchOutput::default();
    let kept = engine
        .run_kept(BatchInput::Device(tensor), batch, &mut unused)
        .map_err(|e| e.to_string())?
        .ok_or("the output did not stay on the device")?;
    let classes = engine.spec().names.len();
    post.run(kept.ptr, kept.dims, classes, 0.25)
        .map_err(|e| e.to_string())
}

/// Frames per second through GPU preprocessing and the engine at `batch`.
fn pipeline_rate(
    engine: &mut OrtEngine,
    prep: &mut GpuPrep,
    frame: &Frame,
    batch: usize,
) -> Result<f64, String> {
    let mut out = BatchOutput::default();
    rate(batch, || on_device(engine, prep, frame, batch, &mut out))
}

/// Largest class-score difference (channels 4..) between two outputs of one image.
fn score_diff(a: &BatchOutput, b: &BatchOutput) -> f32 {
    let scores = 4 * a.anchors..a.channels * a.anchors;
    if a.data.len() != b.data.len() {
        return f32::INFINITY;
    }
    a.image(0)[scores.clone()]
        .iter()
        .zip(&b.image(0)[scores])
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn images_per_second(engine: &mut OrtEngine, frame: &Frame, batch: usize) -> Result<f64, String> {
    let data = input(frame, batch);
    let mut out = BatchOutput::default();
    rate(batch, || {
        engine
            .run(&data, batch, &mut out)
            .map_err(|e| e.to_string())
    })
}

/// Prints the engine table; false when a check failed.
pub fn section(model: &Path, clip: &Path, engines_dir: &Path, kernels: &Path) -> bool {
    println!("\n## Engines (YOLOv8n)\n");
    if !model.is_file() {
        println!(
            "skipped: no {} (bench/gpu-check.sh --prepare)",
            model.display()
        );
        return true;
    }
    let frame = match picture(clip) {
        Ok(f) => f,
        Err(e) => {
            println!("FAIL: no picture to run the engines on ({e}; bench/gpu-check.sh --prepare)");
            return false;
        }
    };
    println!("Score diff: largest class-score difference from the CPU engine on the H.264 clip's first picture letterboxed on the CPU (host input) and by our kernel into device memory (device input); tolerance 0.02. Load: includes TensorRT's build on a cold cache. img/s: the engine alone on a host batch. GPU path: kernel letterbox + engine from device memory, frames/s at batch 8 with the output brought back whole, then kept on the device with only candidates back (NMS not included; they must equal the host's on that picture, which has some), and the 5 fps cameras the faster makes (decode not included).\n");
    println!("| backend | load s | score diff, host input | score diff, device input | img/s b1 | img/s b8 | img/s b32 | GPU path fps b8 | GPU path fps b8, candidates on device | 5 fps cameras | result |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for backend in [Backend::Tensorrt, Backend::Cuda] {
        let row = (|| -> Result<Option<String>, String> {
            let placement = match Placement::resolve(backend, 0) {
                Ok(p) => p,
                Err(why) => {
                    println!(
                        "| {} | skipped: {why} | | | | | | | | | |",
                        backend.as_str()
                    );
                    return Ok(None);
                }
            };
            let accel = placement
                .accel(model, true, (1, 8, 32), engines_dir)
                .map_err(|e| e.to_string())?;
            let mut cpu =
                OrtEngine::load(model, 4, ModelKind::Detector).map_err(|e| e.to_string())?;
            let started = Instant::now();
            let mut gpu = OrtEngine::load_with(model, 1, ModelKind::Detector, &accel)
                .map_err(|e| e.to_string())?;
            let load = started.elapsed().as_secs_f64();
            let (mut want, mut got) = (BatchOutput::default(), BatchOutput::default());
            cpu.run(&input(&frame, 1), 1, &mut want)
                .map_err(|e| e.to_string())?;
            gpu.run(&input(&frame, 1), 1, &mut got)
                .map_err(|e| e.to_string())?;
            let diff = score_diff(&want, &got);
            let mut prep = GpuPrep::new(0, 640, 640, kernels)?;
            let mut device_out = BatchOutput::default();
            on_device(&mut gpu, &mut prep, &frame, 1, &mut device_out)?;
            let device_diff = score_diff(&want, &device_out);
            let rates = [1, 8, 32]
                .iter()
                .map(|&b| images_per_second(&mut gpu, &frame, b))
                .collect::<Result<Vec<_>, _>>()?;
            let path_fps = pipeline_rate(&mut gpu, &mut prep, &frame, 8)?;
            // Kept on the device: the candidate kernel's list is the host's, from the
            // same engine on the same device input.
            let mut post = GpuCandidates::new(0, kernels)?;
            let classes = gpu.spec().names.len();
            let mut found = on_device_kept(&mut gpu, &mut prep, &mut post, &frame, 1)?.remove(0);
            found.sort_by_key(|c| c.anchor);
            let host = candidates(device_out.image(0), device_out.anchors, classes, 0.25);
            // A picture with nothing on it would make this comparison vacuous.
            let same = !host.is_empty()
                && found.len() == host.len()
                && found.iter().zip(&host).all(|(a, b)| {
                    a.anchor == b.anchor
                        && a.class_id == b.class_id
                        && (a.score - b.score).abs() <= 1e-3
                });
            let kept_fps = rate(8, || {
                on_device_kept(&mut gpu, &mut prep, &mut post, &frame, 8).map(drop)
            })?;
            let pass = diff <= 0.02 && device_diff <= 0.02 && same;
            ok &= pass;
            Ok(Some(format!(
                "| {} | {load:.1} | {diff:.4} | {device_diff:.4} | {:.0} | {:.0} | {:.0} | {path_fps:.0} | {kept_fps:.0} ({} of {} candidates equal) | {:.0} | {} |",
                backend.as_str(),
                rates[0],
                rates[1],
                rates[2],
                if same { host.len() } else { 0 },
                host.len(),
                path_fps.max(kept_fps) / 5.0,
                if pass { "pass" } else { "FAIL" }
            )))
        })();
        match row {
            Ok(Some(r)) => println!("{r}"),
            Ok(None) => {}
            Err(e) => {
                ok = false;
                println!("| {} | FAIL: {e} | | | | | | | | | |", backend.as_str());
            }
        }
    }
    ok
}
