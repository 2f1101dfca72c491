//! Our CUDA kernels: their sources (embedded from `kernels/`), their entry points, and
//! compiling them with NVRTC for a GPU architecture.
//!
//! The preprocessing kernels ([`PREPROCESS`]) write one frame into slot `k` of a batch
//! tensor `[batch, 3, dst_h, dst_w]` exactly as
//! [`crate::preprocess::cpu::letterbox_into`] does (fp32), or its
//! [`crate::preprocess::f16_bits`] (fp16). The post-processing kernel ([`POSTPROCESS`])
//! finds a detector's candidates as [`crate::postprocess::yolo::candidates`] does.
//! Parity with the CPU references is checked on a GPU by `tests/gpu.rs` and
//! `bench/gpu-check.sh`; every kernel's compilation is checked in CI with NVRTC alone.

use super::driver::{Context, DriverError, Module};
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

/// The preprocessing kernels: a frame into a slot of the batch tensor.
pub const PREPROCESS: KernelSource = KernelSource {
    file: "preprocess.cu",
    source: include_str!("../../kernels/preprocess.cu"),
    entry_points: &[
        "letterbox_i420_f32",
        "letterbox_i420_f16",
        "letterbox_nv12_f32",
        "letterbox_nv12_f16",
        "letterbox_batch_f32",
        "letterbox_batch_f16",
    ],
};

/// The post-processing kernels: a detector's output down to its candidates.
pub const POSTPROCESS: KernelSource = KernelSource {
    file: "postprocess.cu",
    source: include_str!("../../kernels/postprocess.cu"),
    entry_points: &["yolo_candidates"],
};

/// Every kernel the server uses.
pub const SOURCES: &[KernelSource] = &[PREPROCESS, POSTPROCESS];

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

/// The NVRTC target for a compute capability's machine code: `sm_90` for (9, 0).
pub fn sm_for(compute_capability: (i32, i32)) -> String {
    format!("sm_{}{}", compute_capability.0, compute_capability.1)
}

/// What a GPU loads a kernel module from.
#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// Machine code for exactly one GPU generation: loads on any driver of NVRTC's
    /// CUDA major version.
    Cubin(Vec<u8>),
    /// PTX, compiled by the driver as it loads: needs a driver as new as NVRTC.
    Ptx(String),
}

impl Image {
    /// `cubin` or `PTX`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Image::Cubin(_) => "cubin",
            Image::Ptx(_) => "PTX",
        }
    }
}

/// `kernel`'s images for the GPU of compute capability `cc`, best first: its cubin,
/// then PTX, each from the cache under `dir` or compiled by NVRTC (loaded on first
/// need) and cached. Either may be missing (a host without NVRTC whose cache holds
/// only one); the error is returned only when neither can be had.
pub fn images_cached(
    dir: &std::path::Path,
    kernel: &KernelSource,
    cc: (i32, i32),
    nvrtc: &mut Option<Nvrtc>,
) -> Result<Vec<Image>, NvrtcError> {
    let sm = sm_for(cc);
    let cubin = cached(
        &cache_path(dir, kernel, &sm).with_extension("cubin"),
        nvrtc,
        |n| n.compile_cubin(kernel.file, kernel.source, &sm),
    );
    let ptx = ptx_cached(dir, kernel, &arch_for(cc), nvrtc);
    match (cubin, ptx) {
        (Err(e), Err(_)) => Err(e),
        (cubin, ptx) => Ok(cubin
            .ok()
            .map(Image::Cubin)
            .into_iter()
            .chain(ptx.ok().map(Image::Ptx))
            .collect()),
    }
}

/// `kernel`'s images for GPU `device_id` of this host, best first (see
/// [`images_cached`]), with the cache under `dir`.
pub fn images_for_device(
    device_id: i32,
    kernel: &KernelSource,
    dir: &std::path::Path,
) -> Result<Vec<Image>, String> {
    let crate::gpu::GpuStatus::Available { devices, .. } = crate::gpu::probe() else {
        return Err("no usable GPU".into());
    };
    let device = devices
        .iter()
        .find(|d| d.ordinal == device_id)
        .ok_or_else(|| format!("GPU {device_id} is not on this host"))?;
    images_cached(dir, kernel, device.compute_capability, &mut None).map_err(|e| e.to_string())
}

/// Loads the first of `images` (best first) that this GPU and driver accept into
/// `ctx`; the image kind loaded is returned with it. A cubin for another GPU, or PTX
/// newer than the driver, is passed over for the next.
pub fn load_first(ctx: &Context, images: &[Image]) -> Result<(Module, &'static str), DriverError> {
    let mut errors = Vec::new();
    for image in images {
        let module = match image {
            Image::Cubin(bytes) => ctx.load_cubin(bytes),
            Image::Ptx(text) => ctx.load_ptx(text),
        };
        match module {
            Ok(module) => return Ok((module, image.kind())),
            Err(e) => errors.push(format!("{}: {e}", image.kind())),
        }
    }
    Err(DriverError::Unavailable(format!(
        "no kernel image loads here ({})",
        if errors.is_empty() {
            "none given".into()
        } else {
            errors.join("; ")
        }
    )))
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

/// Where `kernel`'s PTX for `arch` is cached under `dir`: named by the kernel, the
/// architecture and a hash of the source and the compiler options, so an edited kernel
/// (or one compiled otherwise) is compiled afresh.
pub fn cache_path(dir: &std::path::Path, kernel: &KernelSource, arch: &str) -> std::path::PathBuf {
    let stem = kernel.file.trim_end_matches(".cu");
    let options = super::nvrtc::OPTIONS.join(" ");
    let hash = crate::hash::fnv1a(&[
        kernel.source.as_bytes(),
        arch.as_bytes(),
        options.as_bytes(),
    ]);
    dir.join(format!("{stem}-{arch}-{hash:016x}.ptx"))
}

/// `kernel`'s PTX for `arch`: from the cache under `dir` when it is there, otherwise
/// compiled with NVRTC (loaded on first need) and cached. A server starts without
/// compiling after its first run, and a GPU host without NVRTC can use PTX made
/// elsewhere. A cache that cannot be written is only logged.
pub fn ptx_cached(
    dir: &std::path::Path,
    kernel: &KernelSource,
    arch: &str,
    nvrtc: &mut Option<Nvrtc>,
) -> Result<String, NvrtcError> {
    let bytes = cached(&cache_path(dir, kernel, arch), nvrtc, |n| {
        n.compile_ptx(kernel.file, kernel.source, arch)
            .map(String::into_bytes)
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The bytes cached at `path`, or `compile`d with NVRTC and cached there.
fn cached(
    path: &std::path::Path,
    nvrtc: &mut Option<Nvrtc>,
    compile: impl FnOnce(&Nvrtc) -> Result<Vec<u8>, NvrtcError>,
) -> Result<Vec<u8>, NvrtcError> {
    if let Ok(bytes) = std::fs::read(path) {
        return Ok(bytes);
    }
    let compiler = match nvrtc {
        Some(n) => n,
        None => nvrtc.insert(Nvrtc::load()?),
    };
    let bytes = compile(compiler)?;
    // A name of this process's and thread's own: servers or test threads compiling the
    // same kernels at once must not write into one file while another renames it.
    let tmp = path.with_extension(format!(
        "tmp{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&tmp, &bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "Cannot cache compiled kernels; they will be compiled again next start.");
    }
    Ok(bytes)
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
    fn cache_names_change_with_the_source_and_the_architecture() {
        let dir = std::path::Path::new("/c");
        let k = PREPROCESS;
        let edited = KernelSource {
            source: "// edited\n",
            ..k
        };
        let a = cache_path(dir, &k, "compute_90");
        assert!(a.starts_with("/c") && a.to_str().unwrap().contains("preprocess-compute_90-"));
        assert_eq!(a, cache_path(dir, &k, "compute_90"));
        assert_ne!(a, cache_path(dir, &k, "compute_86"));
        assert_ne!(a, cache_path(dir, &edited, "compute_90"));
    }

    #[test]
    fn matrices_and_architectures_map_as_the_kernels_expect() {
        assert!(PREPROCESS.source.contains("#define MATRIX_BT601 0"));
        assert!(PREPROCESS.source.contains("#define MATRIX_BT709 1"));
        assert!(PREPROCESS.source.contains("#define MATRIX_BT601_FULL 2"));
        assert_eq!(matrix_arg(ColorMatrix::Bt601), 0);
        assert_eq!(matrix_arg(ColorMatrix::Bt709), 1);
        assert_eq!(matrix_arg(ColorMatrix::Bt601Full), 2);
        assert_eq!(arch_for((9, 0)), "compute_90");
        assert_eq!(arch_for((8, 6)), "compute_86");
    }
}
