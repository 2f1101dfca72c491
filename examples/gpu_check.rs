//! The GPU check `bench/gpu-check.sh` runs.
//!
//! - `gpu_check --prepare DIR` (here, no GPU needed): compiles the kernels with NVRTC
//!   for every GPU generation we target into the PTX cache `DIR`, so a GPU host without
//!   NVRTC can run them.
//! - `gpu_check DIR` (on the GPU host): the probe, the kernels for the GPU present
//!   (from `DIR`, or compiled there), and kernel parity with the CPU reference plus
//!   time per launch, as one markdown table. Exits 1 when a check fails, 2 without a
//!   GPU.

use std::path::Path;

use kvs_infer::gpu::kernels::{arch_for, ptx_cached, SOURCES};
use kvs_infer::gpu::letterbox::{check_parity, GpuLetterbox, F16_TOLERANCE_ULP, F32_TOLERANCE};
use kvs_infer::gpu::GpuStatus;

/// Turing (T4), Ampere (A100, A10G), Ada (L4), Hopper (H100).
const TARGETS: [(i32, i32); 5] = [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0)];

fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    println!("| {what} | FAIL: {e} |");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--prepare") {
        let dir = Path::new(
            args.get(1)
                .map_or("bench/gpu-check/kernels", String::as_str),
        );
        let mut nvrtc = None;
        for cc in TARGETS {
            for kernel in SOURCES {
                if let Err(e) = ptx_cached(dir, kernel, &arch_for(cc), &mut nvrtc) {
                    fail("kernels compile", e);
                }
            }
        }
        println!(
            "PTX for {} architectures cached in {}",
            TARGETS.len(),
            dir.display()
        );
        return;
    }
    let dir = Path::new(
        args.first()
            .map_or("bench/gpu-check/kernels", String::as_str),
    );
    let status = kvs_infer::gpu::probe();
    println!("GPU: {}", status.summary());
    let GpuStatus::Available { devices, .. } = status else {
        std::process::exit(2);
    };
    let arch = arch_for(devices[0].compute_capability);
    let mut nvrtc = None;
    let ptx =
        ptx_cached(dir, &SOURCES[0], &arch, &mut nvrtc).unwrap_or_else(|e| fail("kernels", e));
    println!(
        "Kernels for {arch}: {}",
        if nvrtc.is_some() {
            "compiled here with NVRTC"
        } else {
            "from the PTX cache"
        }
    );
    let gpu = GpuLetterbox::new(0, &ptx).unwrap_or_else(|e| fail("kernels load", e));
    let rows = check_parity(&gpu).unwrap_or_else(|e| fail("kernel parity", e));
    println!(
        "\nKernel parity with the CPU reference (tolerance: fp32 {F32_TOLERANCE}, fp16 \
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
    if rows.iter().any(|r| !r.pass) {
        std::process::exit(1);
    }
}
