//! A minimal runtime-loaded binding to NVRTC, CUDA's runtime compiler: CUDA C++ source
//! in, PTX out. No GPU is needed to compile, which is how CI checks every kernel.
//!
//! The library is looked for in this order: `KVS_INFER_NVRTC` (a path), the project's
//! `.cache/cuda/lib/` (what `scripts/setup.sh --test` unpacks from the
//! `nvidia-cuda-nvrtc-cu12` wheel), `$CUDA_HOME/lib64`, then the system's
//! `libnvrtc.so.13` / `libnvrtc.so.12` / `libnvrtc.so`.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::{Path, PathBuf};

type NvrtcResult = c_int;
type Program = *mut std::ffi::c_void;

type Version = unsafe extern "C" fn(*mut c_int, *mut c_int) -> NvrtcResult;
type CreateProgram = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> NvrtcResult;
type CompileProgram = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> NvrtcResult;
type GetSize = unsafe extern "C" fn(Program, *mut usize) -> NvrtcResult;
type GetText = unsafe extern "C" fn(Program, *mut c_char) -> NvrtcResult;
type DestroyProgram = unsafe extern "C" fn(*mut Program) -> NvrtcResult;
type ErrorString = unsafe extern "C" fn(NvrtcResult) -> *const c_char;

/// Why NVRTC could not be used or a kernel did not compile.
#[derive(Debug, thiserror::Error)]
pub enum NvrtcError {
    /// No NVRTC library was found.
    #[error("NVRTC not found (tried {tried}); run scripts/setup.sh --test, or set KVS_INFER_NVRTC to libnvrtc.so")]
    NotFound {
        /// The places tried.
        tried: String,
    },
    /// The library lacks a function we need.
    #[error("{path}: {message}")]
    Symbol {
        /// The library.
        path: String,
        /// What is missing.
        message: String,
    },
    /// The source did not compile; `log` is NVRTC's own.
    #[error("{name} does not compile for {arch}: {log}")]
    Compile {
        /// The kernel file.
        name: String,
        /// The target (`compute_90`).
        arch: String,
        /// NVRTC's log.
        log: String,
    },
}

/// NVRTC options besides the architecture. `--fmad=false` keeps the compiler from
/// fusing a multiply and an add into one rounding: the kernels then compute what their
/// CPU references compute, bit for bit. With fusion the first H100 run differed by up
/// to 7.6e-6 (fp32) and two fp16 ulps in dark pixels; the kernels are memory-bound, so
/// the separate roundings cost nothing measurable. Part of the cache key.
pub const OPTIONS: &[&str] = &["--std=c++17", "--fmad=false"];

/// A loaded NVRTC.
pub struct Nvrtc {
    _lib: libloading::Library,
    path: PathBuf,
    version: Version,
    create: CreateProgram,
    compile: CompileProgram,
    log_size: GetSize,
    log: GetText,
    ptx_size: GetSize,
    ptx: GetText,
    cubin_size: GetSize,
    cubin: GetText,
    destroy: DestroyProgram,
    error_string: ErrorString,
}

// SAFETY: NVRTC's API is thread-safe for distinct programs; the handle holds only
// function pointers into the loaded library.
unsafe impl Send for Nvrtc {}
unsafe impl Sync for Nvrtc {}

/// Where to look for NVRTC, in order.
fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(p) = std::env::var("KVS_INFER_NVRTC") {
        out.push(PathBuf::from(p));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for root in roots {
        out.push(root.join(".cache/cuda/lib/libnvrtc.so.12"));
    }
    if let Ok(home) = std::env::var("CUDA_HOME") {
        out.push(Path::new(&home).join("lib64/libnvrtc.so"));
    }
    // Runtime-only installs (CUDA's runtime images) have the versioned names alone.
    for name in ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"] {
        out.push(Path::new("/usr/local/cuda/lib64").join(name));
    }
    for name in ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"] {
        out.push(PathBuf::from(name));
    }
    out
}

impl Nvrtc {
    /// Loads the first NVRTC found.
    pub fn load() -> Result<Self, NvrtcError> {
        let list = candidates();
        for path in &list {
            let by_name = path.components().count() == 1;
            if !by_name && !path.is_file() {
                continue;
            }
            // SAFETY: NVRTC is a plain C library meant to be loaded into any process.
            if let Ok(lib) = unsafe { libloading::Library::new(path) } {
                return Self::bind(lib, path.clone());
            }
        }
        Err(NvrtcError::NotFound {
            tried: list
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    fn bind(lib: libloading::Library, path: PathBuf) -> Result<Self, NvrtcError> {
        fn sym<T: Copy>(
            lib: &libloading::Library,
            path: &Path,
            name: &str,
        ) -> Result<T, NvrtcError> {
            let c = format!("{name}\0");
            // SAFETY: each name is an NVRTC function whose C type T matches.
            unsafe { lib.get::<T>(c.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| NvrtcError::Symbol {
                    path: path.display().to_string(),
                    message: format!("no {name}: {e}"),
                })
        }
        Ok(Self {
            version: sym(&lib, &path, "nvrtcVersion")?,
            create: sym(&lib, &path, "nvrtcCreateProgram")?,
            compile: sym(&lib, &path, "nvrtcCompileProgram")?,
            log_size: sym(&lib, &path, "nvrtcGetProgramLogSize")?,
            log: sym(&lib, &path, "nvrtcGetProgramLog")?,
            ptx_size: sym(&lib, &path, "nvrtcGetPTXSize")?,
            ptx: sym(&lib, &path, "nvrtcGetPTX")?,
            cubin_size: sym(&lib, &path, "nvrtcGetCUBINSize")?,
            cubin: sym(&lib, &path, "nvrtcGetCUBIN")?,
            destroy: sym(&lib, &path, "nvrtcDestroyProgram")?,
            error_string: sym(&lib, &path, "nvrtcGetErrorString")?,
            _lib: lib,
            path,
        })
    }

    /// The library loaded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// NVRTC's version (major, minor).
    pub fn version(&self) -> (i32, i32) {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        unsafe { (self.version)(&mut major, &mut minor) };
        (major, minor)
    }

    /// Compiles `source` (named `name` in messages) to PTX for `arch` (`compute_90`).
    pub fn compile_ptx(&self, name: &str, source: &str, arch: &str) -> Result<String, NvrtcError> {
        let bytes = self.compile(name, source, arch, false)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Compiles `source` to machine code (a cubin) for exactly `arch` (`sm_90`). Unlike
    /// PTX, which the driver compiles when it loads it and so needs a driver at least as
    /// new as NVRTC, a cubin loads on any driver of the same CUDA major version.
    pub fn compile_cubin(
        &self,
        name: &str,
        source: &str,
        arch: &str,
    ) -> Result<Vec<u8>, NvrtcError> {
        self.compile(name, source, arch, true)
    }

    fn compile(
        &self,
        name: &str,
        source: &str,
        arch: &str,
        cubin: bool,
    ) -> Result<Vec<u8>, NvrtcError> {
        let fail = |log: String| NvrtcError::Compile {
            name: name.to_owned(),
            arch: arch.to_owned(),
            log,
        };
        let c_source =
            CString::new(source).map_err(|_| fail("the source holds a NUL byte".into()))?;
        let c_name = CString::new(name).map_err(|_| fail("the name holds a NUL byte".into()))?;
        let options: Vec<CString> = std::iter::once(format!("--gpu-architecture={arch}"))
            .chain(OPTIONS.iter().map(|o| (*o).to_owned()))
            .filter_map(|o| CString::new(o).ok())
            .collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut program: Program = std::ptr::null_mut();
        // SAFETY: NVRTC calls with valid NUL-terminated strings that outlive the calls,
        // a program handle we create and destroy here, and buffers sized as NVRTC says.
        unsafe {
            let rc = (self.create)(
                &mut program,
                c_source.as_ptr(),
                c_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            );
            if rc != 0 {
                return Err(fail(self.describe(rc)));
            }
            let rc = (self.compile)(program, option_ptrs.len() as c_int, option_ptrs.as_ptr());
            let log = self.text(program, self.log_size, self.log);
            let result = if rc != 0 {
                Err(fail(format!("{}\n{}", self.describe(rc), log.trim_end())))
            } else {
                let (size, get) = if cubin {
                    (self.cubin_size, self.cubin)
                } else {
                    (self.ptx_size, self.ptx)
                };
                let mut out = self.bytes(program, size, get);
                if !cubin {
                    // PTX is NUL-terminated text.
                    let end = out.iter().position(|&b| b == 0).unwrap_or(out.len());
                    out.truncate(end);
                }
                if out.is_empty() {
                    Err(fail(format!(
                        "NVRTC returned no {}",
                        if cubin { "cubin" } else { "PTX" }
                    )))
                } else {
                    Ok(out)
                }
            };
            (self.destroy)(&mut program);
            result
        }
    }

    /// A program's log (text up to its NUL).
    ///
    /// # Safety
    /// `program` must be a live NVRTC program.
    unsafe fn text(&self, program: Program, size: GetSize, get: GetText) -> String {
        // SAFETY: per this function's contract.
        let buf = unsafe { self.bytes(program, size, get) };
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    }

    /// A program's log, PTX or cubin as NVRTC gives it, empty on failure.
    ///
    /// # Safety
    /// `program` must be a live NVRTC program.
    unsafe fn bytes(&self, program: Program, size: GetSize, get: GetText) -> Vec<u8> {
        let mut n = 0usize;
        // SAFETY: per this function's contract.
        if unsafe { size(program, &mut n) } != 0 || n == 0 {
            return Vec::new();
        }
        let mut buf = vec![0u8; n];
        // SAFETY: `buf` holds the `n` bytes NVRTC asked for.
        if unsafe { get(program, buf.as_mut_ptr().cast()) } != 0 {
            return Vec::new();
        }
        buf
    }

    fn describe(&self, rc: NvrtcResult) -> String {
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string.
        let text = unsafe { (self.error_string)(rc) };
        if text.is_null() {
            return format!("NVRTC error {rc}");
        }
        // SAFETY: non-null, static, NUL-terminated.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }
}
