//! The CUDA driver's C API as far as [`super`] uses it: its types, the functions
//! resolved from `libcuda.so.1` at run time, and turning a `CUresult` into an error.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use super::DriverError;

pub(super) type CuResult = c_int;
pub(super) type CuDevice = c_int;
pub(super) type CuContext = *mut c_void;
pub(super) type CuModule = *mut c_void;
pub(super) type CuFunction = *mut c_void;
pub(super) type CuDevicePtr = u64;
pub(super) type CuStream = *mut c_void;

/// `CU_STREAM_NON_BLOCKING`: no implicit synchronisation with the legacy default
/// stream, so our work never waits for another session's.
pub(super) const STREAM_NON_BLOCKING: c_uint = 1;

/// The driver's functions, resolved when a [`super::Context`] is made.
pub(super) struct Api {
    _lib: libloading::Library,
    pub(super) init: unsafe extern "C" fn(c_uint) -> CuResult,
    pub(super) device_get: unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult,
    pub(super) primary_retain: unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult,
    pub(super) primary_release: unsafe extern "C" fn(CuDevice) -> CuResult,
    pub(super) ctx_set_current: unsafe extern "C" fn(CuContext) -> CuResult,
    pub(super) ctx_synchronize: unsafe extern "C" fn() -> CuResult,
    pub(super) module_load_data: unsafe extern "C" fn(*mut CuModule, *const c_void) -> CuResult,
    pub(super) module_unload: unsafe extern "C" fn(CuModule) -> CuResult,
    pub(super) module_get_function:
        unsafe extern "C" fn(*mut CuFunction, CuModule, *const c_char) -> CuResult,
    pub(super) mem_alloc: unsafe extern "C" fn(*mut CuDevicePtr, usize) -> CuResult,
    pub(super) mem_free: unsafe extern "C" fn(CuDevicePtr) -> CuResult,
    pub(super) htod: unsafe extern "C" fn(CuDevicePtr, *const c_void, usize) -> CuResult,
    pub(super) dtoh: unsafe extern "C" fn(*mut c_void, CuDevicePtr, usize) -> CuResult,
    pub(super) launch: unsafe extern "C" fn(
        CuFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        *mut c_void,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    pub(super) error_name: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
    pub(super) memcpy_2d: unsafe extern "C" fn(*const Memcpy2d) -> CuResult,
    pub(super) stream_create: unsafe extern "C" fn(*mut CuStream, c_uint) -> CuResult,
    pub(super) stream_destroy: unsafe extern "C" fn(CuStream) -> CuResult,
    pub(super) stream_synchronize: unsafe extern "C" fn(CuStream) -> CuResult,
    pub(super) htod_async:
        unsafe extern "C" fn(CuDevicePtr, *const c_void, usize, CuStream) -> CuResult,
    pub(super) dtod_async:
        unsafe extern "C" fn(CuDevicePtr, CuDevicePtr, usize, CuStream) -> CuResult,
    pub(super) host_alloc: unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> CuResult,
    pub(super) free_host: unsafe extern "C" fn(*mut c_void) -> CuResult,
    pub(super) memset_d32_async:
        unsafe extern "C" fn(CuDevicePtr, c_uint, usize, CuStream) -> CuResult,
}

/// `CUmemorytype`: host and device.
pub(super) const MEMORY_HOST: c_uint = 1;
pub(super) const MEMORY_DEVICE: c_uint = 2;

/// `CUDA_MEMCPY2D`: a pitched copy between host and device memory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Memcpy2d {
    pub src_x_in_bytes: usize,
    pub src_y: usize,
    pub src_memory_type: c_uint,
    pub src_host: *const c_void,
    pub src_device: CuDevicePtr,
    pub src_array: *mut c_void,
    pub src_pitch: usize,
    pub dst_x_in_bytes: usize,
    pub dst_y: usize,
    pub dst_memory_type: c_uint,
    pub dst_host: *mut c_void,
    pub dst_device: CuDevicePtr,
    pub dst_array: *mut c_void,
    pub dst_pitch: usize,
    pub width_in_bytes: usize,
    pub height: usize,
}

impl Api {
    /// Resolves every function from `name`; why not, as text.
    pub(super) fn load(name: &str) -> Result<Self, String> {
        // SAFETY: the NVIDIA driver library is designed to be loaded into any process.
        let lib = unsafe { libloading::Library::new(name) }.map_err(|e| format!("{name}: {e}"))?;
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: each symbol is a driver API function of the field's C type.
                let s = unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{}: {e}", $name))?;
                *s
            }};
        }
        Ok(Self {
            init: sym!("cuInit"),
            device_get: sym!("cuDeviceGet"),
            primary_retain: sym!("cuDevicePrimaryCtxRetain"),
            primary_release: sym!("cuDevicePrimaryCtxRelease_v2"),
            ctx_set_current: sym!("cuCtxSetCurrent"),
            ctx_synchronize: sym!("cuCtxSynchronize"),
            module_load_data: sym!("cuModuleLoadData"),
            module_unload: sym!("cuModuleUnload"),
            module_get_function: sym!("cuModuleGetFunction"),
            mem_alloc: sym!("cuMemAlloc_v2"),
            mem_free: sym!("cuMemFree_v2"),
            htod: sym!("cuMemcpyHtoD_v2"),
            dtoh: sym!("cuMemcpyDtoH_v2"),
            launch: sym!("cuLaunchKernel"),
            error_name: sym!("cuGetErrorName"),
            memcpy_2d: sym!("cuMemcpy2D_v2"),
            stream_create: sym!("cuStreamCreate"),
            stream_destroy: sym!("cuStreamDestroy_v2"),
            stream_synchronize: sym!("cuStreamSynchronize"),
            htod_async: sym!("cuMemcpyHtoDAsync_v2"),
            dtod_async: sym!("cuMemcpyDtoDAsync_v2"),
            host_alloc: sym!("cuMemHostAlloc"),
            free_host: sym!("cuMemFreeHost"),
            memset_d32_async: sym!("cuMemsetD32Async"),
            _lib: lib,
        })
    }

    pub(super) fn check(&self, call: &'static str, code: CuResult) -> Result<(), DriverError> {
        if code == 0 {
            return Ok(());
        }
        let mut text: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorName writes a pointer to a static string, or fails.
        let name = if unsafe { (self.error_name)(code, &mut text) } == 0 && !text.is_null() {
            // SAFETY: non-null, static, NUL-terminated.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        } else {
            "unknown".into()
        };
        Err(DriverError::Call { call, code, name })
    }
}
