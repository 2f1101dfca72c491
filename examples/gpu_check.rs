//! The GPU check `bench/gpu-check.sh` runs on a GPU host: the probe, the kernels
//! compiled for the GPU present (NVRTC there, or the PTX made here by
//! `bench/gpu-check.sh --prepare` when the host has no NVRTC), and kernel parity with
//! the CPU reference plus time per launch, as one markdown table. Exits 1 when a check
//! fails, 2 when there is no GPU.

use kvs_infer::gpu::kernels::{arch_for, compile_all};
use kvs_infer::gpu::letterbox::{check_parity, GpuLetterbox, F16_TOLERANCE_ULP, F32_TOLERANCE};
use kvs_infer::gpu::nvrtc::Nvrtc;
use kvs_infer::gpu::GpuStatus;

fn main() {
    let status = kvs_infer::gpu::probe();
    println!("GPU: {}", status.summary());
    let GpuStatus::Available { devices, .. } = status else {
        std::process::exit(2);
    };
    let arch = arch_for(devices[0].compute_capability);
    let ptx = match Nvrtc::load() {
        Ok(nvrtc) => {
            let (major, minor) = nvrtc.version();
            println!(
                "NVRTC {major}.{minor} ({}) compiles for {arch}",
                nvrtc.path().display()
            );
            match compile_all(&nvrtc, &arch) {
                Ok(mut p) => p.remove(0).1,
                Err(e) => {
                    println!("| kernels compile | FAIL: {e} |");
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            let path = std::env::var("KVS_INFER_PTX")
                .unwrap_or_else(|_| "bench/gpu-check/preprocess.ptx".into());
            println!("NVRTC not here ({e}); using the PTX at {path} (the driver JIT-compiles it)");
            std::fs::read_to_string(&path).unwrap_or_else(|e| {
                println!("| kernels | FAIL: cannot read {path}: {e} |");
                std::process::exit(1);
            })
        }
    };
    let gpu = match GpuLetterbox::new(0, &ptx) {
        Ok(g) => g,
        Err(e) => {
            println!("| kernels load | FAIL: {e} |");
            std::process::exit(1);
        }
    };
    let rows = match check_parity(&gpu) {
        Ok(r) => r,
        Err(e) => {
            println!("| kernel parity | FAIL: {e} |");
            std::process::exit(1);
        }
    };
    println!("\nKernel parity with the CPU reference (tolerance: fp32 {F32_TOLERANCE}, fp16 {F16_TOLERANCE_ULP} ulp), slot 1 of a batch of 2:\n");
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
    if rows.iter().any(|r| !r.pass) {
        std::process::exit(1);
    }
}
