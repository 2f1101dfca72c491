//! Our CUDA kernels: their sources (embedded from `kernels/`), their entry points, and
//! compiling them with NVRTC for a GPU architecture.
//!
//! The preprocessing kernels write one frame into slot `k` of a batch tensor
//! `[batch, 3, dst_h, dst_w]` exactly as [`crate::preprocess::cpu::letterbox_into`]
//! does (fp32), or its [`crate::preprocess::f16_bits`] (fp16). Parity with the CPU
//! reference is checked on a GPU by `bench/gpu-check.sh`; every kernel's compilation is
//! checked in CI with NVRTC alone.

use super::nvrtc::{Nvrtc, NvrtcError};
use crate::decode::ColorMatrix;

/// One kernel source file.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name under `kernels/`.
    pub file: &'static str,
    /// Its text.
    pub source: &'static str,
    /// The `extern "C"` entry points it defines.
    pub entry_points: &'static [&'static str],
}

/// Every kernel the server uses.
pub const SOURCES: &[KernelSource] = &[KernelSource {
    file: "preprocess.cu",
    source: include_str!("../../kernels/preprocess.cu"),
    entry_points: &[
        "letterbox_i420_f32",
        "letterbox_i420_f16",
        "letterbox_nv12_f32",
        "letterbox_nv12_f16",
    ],
}];

/// The `matrix` argument of the preprocessing kernels for a frame's colour matrix.
pub fn matrix_arg(matrix: ColorMatrix) -> i32 {
    match matrix {
        ColorMatrix::Bt601 => 0,
        ColorMatrix::Bt709 => 1,
        ColorMatrix::Bt601Full => 2,
    }
}

/// The NVRTC target for a compute capability: `compute_90` for (9, 0).
pub fn arch_for(compute_capability: (i32, i32)) -> String {
    format!("compute_{}{}", compute_capability.0, compute_capability.1)
}

/// Compiles every source for `arch`; the PTX of each, by file name. The first failure
/// is returned with NVRTC's log.
pub fn compile_all(nvrtc: &Nvrtc, arch: &str) -> Result<Vec<(&'static str, String)>, NvrtcError> {
    SOURCES
        .iter()
        .map(|k| {
            let ptx = nvrtc.compile_ptx(k.file, k.source, arch)?;
            for entry in k.entry_points {
                if !ptx.contains(&format!(".entry {entry}(")) {
                    return Err(NvrtcError::Compile {
                        name: k.file.to_owned(),
                        arch: arch.to_owned(),
                        log: format!("the PTX has no entry point {entry}"),
                    });
                }
            }
            Ok((k.file, ptx))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_point_is_declared_extern_c_in_its_source() {
        for k in SOURCES {
            for entry in k.entry_points {
                assert!(
                    k.source
                        .contains(&format!("extern \"C\" __global__ void {entry}(")),
                    "{} lacks {entry}",
                    k.file
                );
            }
        }
    }

    #[test]
    fn matrices_and_architectures_map_as_the_kernels_expect() {
        assert!(SOURCES[0].source.contains("#define MATRIX_BT601 0"));
        assert!(SOURCES[0].source.contains("#define MATRIX_BT709 1"));
        assert!(SOURCES[0].source.contains("#define MATRIX_BT601_FULL 2"));
        assert_eq!(matrix_arg(ColorMatrix::Bt601), 0);
        assert_eq!(matrix_arg(ColorMatrix::Bt709), 1);
        assert_eq!(matrix_arg(ColorMatrix::Bt601Full), 2);
        assert_eq!(arch_for((9, 0)), "compute_90");
        assert_eq!(arch_for((8, 6)), "compute_86");
    }
}
