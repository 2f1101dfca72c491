//! Finding TensorRT at run time: which `libnvinfer` this host has and its version, the
//! third part of a built engine's cache key (`engine::accel`). TensorRT itself is run
//! by ONNX Runtime's TensorRT execution provider, which loads the same library; this
//! only asks it `getInferLibVersion()`, its one C entry point, without creating
//! anything.

use std::ffi::c_int;

/// Library names tried in order, newest major first; `KVS_INFER_TENSORRT` overrides.
pub const LIBRARIES: [&str; 3] = ["libnvinfer.so.10", "libnvinfer.so.9", "libnvinfer.so.8"];

/// A TensorRT version as `getInferLibVersion()` encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrtVersion(pub i32);

impl TrtVersion {
    /// Splits the encoding: `major * 10000 + minor * 100 + patch` from TensorRT 10 on,
    /// `major * 1000 + minor * 100 + patch` before it.
    pub fn parts(self) -> (i32, i32, i32) {
        let v = self.0;
        if v >= 100_000 {
            (v / 10_000, v / 100 % 100, v % 100)
        } else {
            (v / 1000, v / 100 % 10, v % 100)
        }
    }
}

impl std::fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor, patch) = self.parts();
        write!(f, "{major}.{minor}.{patch}")
    }
}

/// The TensorRT library this host has and its version, or why there is none; found
/// once per process (the host capabilities and the placement both ask, and each look
/// opens and closes a library of hundreds of megabytes).
pub fn version() -> Result<TrtVersion, String> {
    static FOUND: std::sync::OnceLock<Result<TrtVersion, String>> = std::sync::OnceLock::new();
    FOUND.get_or_init(find).clone()
}

fn find() -> Result<TrtVersion, String> {
    let names: Vec<String> = match std::env::var("KVS_INFER_TENSORRT") {
        Ok(name) => vec![name],
        Err(_) => LIBRARIES.iter().map(|s| s.to_string()).collect(),
    };
    let mut errors = Vec::new();
    for name in &names {
        match version_of(name) {
            Ok(v) => return Ok(v),
            Err(e) => errors.push(e),
        }
    }
    Err(format!("no TensorRT library: {}", errors.join("; ")))
}

/// The version `name` reports.
pub fn version_of(name: &str) -> Result<TrtVersion, String> {
    // SAFETY: TensorRT's library is designed to be loaded into any process; the one
    // symbol we call has the C signature `int32_t getInferLibVersion(void)`.
    unsafe {
        let lib = libloading::Library::new(name).map_err(|e| format!("{name}: {e}"))?;
        let get: libloading::Symbol<unsafe extern "C" fn() -> c_int> = lib
            .get(b"getInferLibVersion\0")
            .map_err(|e| format!("{name} lacks getInferLibVersion: {e}"))?;
        Ok(TrtVersion(get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decode_in_both_encodings() {
        assert_eq!(TrtVersion(100_800).to_string(), "10.8.0");
        assert_eq!(TrtVersion(101_302).to_string(), "10.13.2");
        assert_eq!(TrtVersion(8601).to_string(), "8.6.1");
        assert_eq!(TrtVersion(8510).to_string(), "8.5.10");
    }

    #[test]
    fn a_missing_library_is_a_reason_not_a_panic() {
        let e = version_of("libnvinfer-that-does-not-exist.so").unwrap_err();
        assert!(e.contains("libnvinfer-that-does-not-exist.so"), "{e}");
    }
}
