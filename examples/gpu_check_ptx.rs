//! Prints the preprocessing kernels' PTX for an architecture (`compute_75` by default),
//! compiled with NVRTC: `bench/gpu-check.sh --prepare` ships it to GPU hosts that have
//! a driver but no NVRTC.

use kvs_infer::gpu::kernels::compile_all;
use kvs_infer::gpu::nvrtc::Nvrtc;

fn main() {
    let arch = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "compute_75".into());
    let result = Nvrtc::load().and_then(|n| compile_all(&n, &arch));
    match result {
        Ok(ptx) => print!("{}", ptx[0].1),
        Err(e) => {
            eprintln!("gpu_check_ptx: {e}");
            std::process::exit(1);
        }
    }
}
