//! GPU discovery through the CUDA driver API, loaded at run time.
//!
//! Opens `libcuda.so.1` itself before anything else touches CUDA (cudarc panics when
//! the library is absent), then asks the driver for its version and each device's
//! name, compute capability and memory. Every failure is a reason, never a panic:
//! `engine.backend = "auto"` logs it when it falls back to the CPU.

use std::ffi::{c_char, c_int, c_uint, CStr};

/// CUresult of success.
const CUDA_SUCCESS: c_int = 0;
/// CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
const ATTR_CC_MAJOR: c_int = 75;
const ATTR_CC_MINOR: c_int = 76;

/// One GPU the driver reports.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuDevice {
    /// Device ordinal.
    pub ordinal: i32,
    /// Marketing name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Compute capability (major, minor): what NVRTC compiles for.
    pub compute_capability: (i32, i32),
    /// Device memory in MiB.
    pub memory_mib: u64,
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum GpuStatus {
    /// A driver and at least one device.
    Available {
        /// The driver's CUDA version, `major * 1000 + minor * 10` (12080 for 12.8).
        driver_version: i32,
        /// Its devices.
        devices: Vec<GpuDevice>,
    },
    /// Why no GPU can be used here.
    Unavailable(String),
}

impl GpuStatus {
    /// Whether a GPU can be used.
    pub fn is_available(&self) -> bool {
        matches!(self, GpuStatus::Available { .. })
    }

    /// One line for logs: the devices, or the reason there are none.
    pub fn summary(&self) -> String {
        match self {
            GpuStatus::Available {
                driver_version,
                devices,
            } => {
                let names: Vec<String> = devices
                    .iter()
                    .map(|d| {
                        format!(
                            "{}: {} (sm_{}{}, {} MiB)",
                            d.ordinal,
                            d.name,
                            d.compute_capability.0,
                            d.compute_capability.1,
                            d.memory_mib
                        )
                    })
                    .collect();
                format!(
                    "CUDA driver {}.{}; {}",
                    driver_version / 1000,
                    driver_version % 1000 / 10,
                    names.join("; ")
                )
            }
            GpuStatus::Unavailable(reason) => reason.clone(),
        }
    }
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuIntOut = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;

/// The CUDA driver library: `libcuda.so.1`, or the one `KVS_INFER_CUDA_DRIVER` names
/// (the tests' fake driver, say). The probe and the driver shim open the same one.
pub fn driver_library() -> String {
    std::env::var("KVS_INFER_CUDA_DRIVER").unwrap_or_else(|_| "libcuda.so.1".into())
}

/// Looks for the CUDA driver ([`driver_library`]) and its devices, once per process:
/// the engine's placement, the decoder's and every engine worker ask, and `cuInit` is
/// not free on a GPU host.
pub fn probe() -> GpuStatus {
    static FOUND: std::sync::OnceLock<GpuStatus> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| probe_library(&driver_library()))
        .clone()
}

/// [`probe`] with the driver library named.
pub fn probe_library(name: &str) -> GpuStatus {
    // SAFETY: loading the NVIDIA driver library runs its initialisers, which are
    // designed to be loaded into any process; we call nothing until symbols resolve.
    let lib = match unsafe { libloading::Library::new(name) } {
        Ok(lib) => lib,
        Err(e) => {
            return GpuStatus::Unavailable(format!(
                "no CUDA driver ({name} cannot be loaded: {e}); is this an NVIDIA GPU host with its driver installed?"
            ))
        }
    };
    let found = unsafe { query(&lib) };
    // Never unloaded: once `cuInit` has run, the driver runs threads of its own in it.
    std::mem::forget(lib);
    match found {
        Ok((driver_version, devices)) if !devices.is_empty() => GpuStatus::Available {
            driver_version,
            devices,
        },
        Ok(_) => GpuStatus::Unavailable("the CUDA driver reports no devices".into()),
        Err(e) => GpuStatus::Unavailable(e),
    }
}

/// Asks the loaded driver for its version and devices.
///
/// # Safety
/// `lib` must be the CUDA driver library; the symbols are used with their documented
/// C signatures.
unsafe fn query(lib: &libloading::Library) -> Result<(i32, Vec<GpuDevice>), String> {
    fn sym<T: Copy>(lib: &libloading::Library, name: &[u8]) -> Result<T, String> {
        // SAFETY: the caller names a driver API function whose type T matches.
        unsafe { lib.get::<T>(name) }.map(|s| *s).map_err(|e| {
            format!(
                "the CUDA driver lacks {}: {e}",
                String::from_utf8_lossy(name)
            )
        })
    }
    let check = |what: &str, rc: c_int| {
        if rc == CUDA_SUCCESS {
            Ok(())
        } else {
            Err(format!(
                "the CUDA driver failed {what} (CUresult {rc}{})",
                hint(rc)
            ))
        }
    };
    let cu_init: CuInit = sym(lib, b"cuInit\0")?;
    let version: CuIntOut = sym(lib, b"cuDriverGetVersion\0")?;
    let count: CuIntOut = sym(lib, b"cuDeviceGetCount\0")?;
    let get: CuDeviceGet = sym(lib, b"cuDeviceGet\0")?;
    let get_name: CuDeviceGetName = sym(lib, b"cuDeviceGetName\0")?;
    let attribute: CuDeviceGetAttribute = sym(lib, b"cuDeviceGetAttribute\0")?;
    let total_mem: CuDeviceTotalMem = sym(lib, b"cuDeviceTotalMem_v2\0")?;
    // SAFETY (all calls below): driver API functions with valid out-pointers to locals.
    check("cuInit", unsafe { cu_init(0) })?;
    let mut driver_version = 0;
    check("cuDriverGetVersion", unsafe {
        version(&mut driver_version)
    })?;
    let mut n = 0;
    check("cuDeviceGetCount", unsafe { count(&mut n) })?;
    let mut devices = Vec::new();
    for ordinal in 0..n {
        let mut dev = 0;
        check("cuDeviceGet", unsafe { get(&mut dev, ordinal) })?;
        let mut buf = [0 as c_char; 256];
        check("cuDeviceGetName", unsafe {
            get_name(buf.as_mut_ptr(), 255, dev)
        })?;
        // SAFETY: the driver wrote a NUL-terminated name into the zeroed buffer.
        let name = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let (mut major, mut minor) = (0, 0);
        check("cuDeviceGetAttribute", unsafe {
            attribute(&mut major, ATTR_CC_MAJOR, dev)
        })?;
        check("cuDeviceGetAttribute", unsafe {
            attribute(&mut minor, ATTR_CC_MINOR, dev)
        })?;
        let mut bytes = 0usize;
        check("cuDeviceTotalMem", unsafe { total_mem(&mut bytes, dev) })?;
        devices.push(GpuDevice {
            ordinal,
            name,
            compute_capability: (major, minor),
            memory_mib: bytes as u64 >> 20,
        });
    }
    Ok((driver_version, devices))
}

/// What common driver errors mean.
fn hint(rc: c_int) -> &'static str {
    match rc {
        100 => ": no CUDA-capable device is visible (CUDA_VISIBLE_DEVICES, or a container without --gpus)",
        35 => ": the driver is older than this CUDA runtime needs",
        999 => ": unknown error, often a driver and kernel module mismatch",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_is_a_reason_not_a_panic() {
        // Whatever this machine has, a library that does not exist is "unavailable".
        let lib = "libcuda-that-does-not-exist.so.1";
        match probe_library(lib) {
            GpuStatus::Unavailable(reason) => {
                assert!(
                    reason.contains("no CUDA driver") && reason.contains(lib),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_real_probe_answers_either_way_and_says_so() {
        let status = probe();
        let summary = status.summary();
        assert!(!summary.is_empty());
        if let GpuStatus::Available { devices, .. } = &status {
            assert!(
                devices.iter().all(|d| d.compute_capability.0 >= 3),
                "{summary}"
            );
        } else {
            eprintln!("no GPU here: {summary}");
        }
    }

    #[test]
    fn the_summary_names_devices_and_the_driver() {
        let status = GpuStatus::Available {
            driver_version: 12080,
            devices: vec![GpuDevice {
                ordinal: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                compute_capability: (9, 0),
                memory_mib: 81_559,
            }],
        };
        assert_eq!(
            status.summary(),
            "CUDA driver 12.8; 0: NVIDIA H100 80GB HBM3 (sm_90, 81559 MiB)"
        );
    }
}
