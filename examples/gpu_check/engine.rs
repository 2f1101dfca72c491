//! The engine section: YOLOv8n through ONNX Runtime's TensorRT (fp16) and CUDA
//! providers, checked against the CPU engine on the same input, and images/s at batch
//! 1, 8 and 32. Runs where the host has a GPU build of ONNX Runtime (`ORT_DYLIB_PATH`)
//! and, for TensorRT, `libnvinfer`; otherwise says which is missing.

use std::path::Path;
use std::time::{Duration, Instant};

use kvs_infer::config::Backend;
use kvs_infer::decode::{ColorMatrix, Frame};
use kvs_infer::engine::onnx::OrtEngine;
use kvs_infer::engine::providers::Placement;
use kvs_infer::engine::{BatchOutput, Engine, ModelKind};

fn input(batch: usize) -> Vec<f32> {
    let frame = Frame::pattern(1280, 720, ColorMatrix::Bt709, 7);
    let mut slot = vec![0f32; 3 * 640 * 640];
    kvs_infer::preprocess::cpu::letterbox_into(&frame, 640, 640, &mut slot);
    slot.repeat(batch)
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

fn images_per_second(engine: &mut OrtEngine, batch: usize) -> Result<f64, String> {
    let data = input(batch);
    let mut out = BatchOutput::default();
    engine
        .run(&data, batch, &mut out)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut images = 0;
    while started.elapsed() < Duration::from_secs(2) {
        engine
            .run(&data, batch, &mut out)
            .map_err(|e| e.to_string())?;
        images += batch;
    }
    Ok(images as f64 / started.elapsed().as_secs_f64())
}

/// Prints the engine table; false when a check failed.
pub fn section(model: &Path, engines_dir: &Path) -> bool {
    println!("\n## Engines (YOLOv8n)\n");
    if !model.is_file() {
        println!(
            "skipped: no {} (bench/gpu-check.sh --prepare)",
            model.display()
        );
        return true;
    }
    println!("Score diff: largest class-score difference from the CPU engine on one letterboxed picture (tolerance 0.02). Load: includes TensorRT's build on a cold cache.\n");
    println!("| backend | load s | score diff | img/s b1 | img/s b8 | img/s b32 | result |");
    println!("|---|---|---|---|---|---|---|");
    let mut ok = true;
    for backend in [Backend::Tensorrt, Backend::Cuda] {
        let row = (|| -> Result<Option<String>, String> {
            let placement = match Placement::resolve(backend, 0) {
                Ok(p) => p,
                Err(why) => {
                    println!("| {} | skipped: {why} | | | | | |", backend.as_str());
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
            cpu.run(&input(1), 1, &mut want)
                .map_err(|e| e.to_string())?;
            gpu.run(&input(1), 1, &mut got).map_err(|e| e.to_string())?;
            let diff = score_diff(&want, &got);
            let rates = [1, 8, 32]
                .iter()
                .map(|&b| images_per_second(&mut gpu, b))
                .collect::<Result<Vec<_>, _>>()?;
            let pass = diff <= 0.02;
            ok &= pass;
            Ok(Some(format!(
                "| {} | {load:.1} | {diff:.4} | {:.0} | {:.0} | {:.0} | {} |",
                backend.as_str(),
                rates[0],
                rates[1],
                rates[2],
                if pass { "pass" } else { "FAIL" }
            )))
        })();
        match row {
            Ok(Some(r)) => println!("{r}"),
            Ok(None) => {}
            Err(e) => {
                ok = false;
                println!("| {} | FAIL: {e} | | | | | |", backend.as_str());
            }
        }
    }
    ok
}
