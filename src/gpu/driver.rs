//! A thin, runtime-loaded shim over the CUDA driver API: the primary context, modules
//! from PTX, device and pinned host buffers, non-blocking streams, kernel launches.
//! Enough to run our kernels beside an inference session and check them against their
//! CPU references; loaded with `dlopen` like the probe, so nothing links CUDA and a
//! machine without it gets an error, not a crash.
//!
//! Two lifetimes matter, both learnt on the first H100 run, where the preprocessing
//! and candidate stages crashed (SIGSEGV) as they were dropped:
//! - every module, stream and buffer holds its context's retain, so the primary
//!   context is released only after the last of them is freed (freeing into a
//!   destroyed context is a use-after-free inside the driver);
//! - the driver library is loaded once per process and never unloaded: after `cuInit`
//!   the driver runs threads of its own in its code.

use std::ffi::{c_int, c_void, CString};
use std::sync::{Arc, OnceLock};

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The driver library or one of its functions is missing.
    #[error("CUDA driver unavailable: {0}")]
    Unavailable(String),
    /// A call returned an error code.
    #[error("{call} failed: CUresult {code} ({name})")]
    Call {
        /// The driver function.
        call: &'static str,
        /// Its CUresult.
        code: c_int,
        /// The driver's name for it.
        name: String,
    },
}

mod api;

pub use api::Memcpy2d;
use api::*;

/// The driver's functions, loaded on first use ([`super::probe::driver_library`]) and
/// kept for the life of the process.
fn api() -> Result<&'static Api, DriverError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| Api::load(&super::probe::driver_library()))
        .as_ref()
        .map_err(|why| DriverError::Unavailable(why.clone()))
}

/// One retain of a device's primary context, released when the last holder (the
/// [`Context`] and everything made in it) is gone.
struct Retained {
    api: &'static Api,
    device: CuDevice,
    raw: CuContext,
}

// SAFETY: a CUDA context may be used from any thread once made current there; the
// handle is a plain pointer the driver owns.
unsafe impl Send for Retained {}
unsafe impl Sync for Retained {}

impl Retained {
    /// Makes the context current on the calling thread.
    fn bind(&self) -> Result<(), DriverError> {
        // SAFETY: a context we retained.
        self.api.check("cuCtxSetCurrent", unsafe {
            (self.api.ctx_set_current)(self.raw)
        })
    }

    /// Makes the context current before a resource of it is freed: a drop may run on
    /// a thread where it is not (a failure here surfaces as the free's own).
    fn bind_for_free(&self) {
        // SAFETY: a context we retained (and still hold).
        unsafe { (self.api.ctx_set_current)(self.raw) };
    }
}

impl Drop for Retained {
    fn drop(&mut self) {
        // SAFETY: releases the retain made in `Context::new`; nothing made in the
        // context is left (each holds this value).
        unsafe { (self.api.primary_release)(self.device) };
    }
}

/// A device's primary context, current on the threads that use it.
pub struct Context {
    retained: Arc<Retained>,
}

impl Context {
    /// Retains device `ordinal`'s primary context and makes it current here.
    pub fn new(ordinal: i32) -> Result<Self, DriverError> {
        let api = api()?;
        // SAFETY (this block): driver calls with valid out-pointers.
        unsafe {
            api.check("cuInit", (api.init)(0))?;
            let mut device = 0;
            api.check("cuDeviceGet", (api.device_get)(&mut device, ordinal))?;
            let mut raw = std::ptr::null_mut();
            api.check(
                "cuDevicePrimaryCtxRetain",
                (api.primary_retain)(&mut raw, device),
            )?;
            let retained = Arc::new(Retained { api, device, raw });
            retained.bind()?;
            Ok(Self { retained })
        }
    }

    /// Makes the context current on the calling thread.
    pub fn bind(&self) -> Result<(), DriverError> {
        self.retained.bind()
    }

    /// Waits for every launch to finish; reports a kernel's failure.
    pub fn synchronize(&self) -> Result<(), DriverError> {
        // SAFETY: no arguments; the current context is ours.
        self.retained.api.check("cuCtxSynchronize", unsafe {
            (self.retained.api.ctx_synchronize)()
        })
    }

    /// Loads a module from a cubin (machine code for this GPU) as it is.
    pub fn load_cubin(&self, cubin: &[u8]) -> Result<Module, DriverError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a cubin image that outlives the call (the driver copies it).
        self.retained.api.check("cuModuleLoadData", unsafe {
            (self.retained.api.module_load_data)(&mut raw, cubin.as_ptr().cast())
        })?;
        Ok(Module {
            ctx: self.retained.clone(),
            raw,
        })
    }

    /// Loads a module from PTX (the driver JIT-compiles it for this GPU).
    pub fn load_ptx(&self, ptx: &str) -> Result<Module, DriverError> {
        let text = CString::new(ptx)
            .map_err(|_| DriverError::Unavailable("PTX holds a NUL byte".into()))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: a NUL-terminated PTX image that outlives the call.
        self.retained.api.check("cuModuleLoadData", unsafe {
            (self.retained.api.module_load_data)(&mut raw, text.as_ptr().cast())
        })?;
        Ok(Module {
            ctx: self.retained.clone(),
            raw,
        })
    }

    /// Allocates `len` elements of `T` on the device.
    pub fn alloc<T: Copy>(&self, len: usize) -> Result<DeviceBuffer<T>, DriverError> {
        let mut ptr = 0;
        let bytes = len.max(1) * std::mem::size_of::<T>();
        // SAFETY: a valid out-pointer.
        self.retained.api.check("cuMemAlloc", unsafe {
            (self.retained.api.mem_alloc)(&mut ptr, bytes)
        })?;
        Ok(DeviceBuffer {
            ctx: self.retained.clone(),
            ptr,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// Copies `host` into a new device buffer.
    pub fn upload<T: Copy>(&self, host: &[T]) -> Result<DeviceBuffer<T>, DriverError> {
        let buf = self.alloc(host.len())?;
        // SAFETY: the buffer holds `host.len()` elements.
        self.retained.api.check("cuMemcpyHtoD", unsafe {
            (self.retained.api.htod)(buf.ptr, host.as_ptr().cast(), std::mem::size_of_val(host))
        })?;
        Ok(buf)
    }

    /// A stream of its own for this context's work, which never waits implicitly for
    /// other streams (an inference session's, say).
    pub fn stream(&self) -> Result<Stream, DriverError> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; the context is current on this thread.
        self.retained.api.check("cuStreamCreate", unsafe {
            (self.retained.api.stream_create)(&mut raw, STREAM_NON_BLOCKING)
        })?;
        Ok(Stream {
            ctx: self.retained.clone(),
            raw,
        })
    }

    /// `len` bytes of page-locked host memory, which the GPU copies from without
    /// staging (so copies on a stream run alongside the host).
    pub fn pinned(&self, len: usize) -> Result<PinnedBuffer, DriverError> {
        let mut ptr = std::ptr::null_mut();
        // SAFETY: a valid out-pointer; flags 0 (portable pinning is not needed).
        self.retained.api.check("cuMemHostAlloc", unsafe {
            (self.retained.api.host_alloc)(&mut ptr, len.max(1), 0)
        })?;
        Ok(PinnedBuffer {
            ctx: self.retained.clone(),
            ptr: ptr.cast(),
            len,
        })
    }

    /// Queues a copy of `len` bytes from pinned `src` (at `offset`) to device `dst` on
    /// `stream`.
    ///
    /// # Safety
    /// `dst` must be device memory with room for `len` bytes, and neither buffer may be
    /// freed or (`src`) written until the stream has run the copy.
    pub unsafe fn copy_async(
        &self,
        dst: u64,
        src: &PinnedBuffer,
        offset: usize,
        len: usize,
        stream: &Stream,
    ) -> Result<(), DriverError> {
        if offset + len > src.len {
            return Err(DriverError::Unavailable(format!(
                "a copy of {len} bytes at {offset} runs past a {}-byte pinned buffer",
                src.len
            )));
        }
        // SAFETY: in bounds of `src` (checked); the rest per this function's contract.
        self.retained.api.check("cuMemcpyHtoDAsync", unsafe {
            (self.retained.api.htod_async)(dst, src.ptr.add(offset).cast(), len, stream.raw)
        })
    }

    /// Queues a copy of `len` bytes from device `src` to device `dst` on `stream`.
    ///
    /// # Safety
    /// Both ranges must be device memory of this context, valid until the stream has
    /// run the copy.
    pub unsafe fn copy_device_async(
        &self,
        dst: u64,
        src: u64,
        len: usize,
        stream: &Stream,
    ) -> Result<(), DriverError> {
        // SAFETY: per this function's contract.
        self.retained.api.check("cuMemcpyDtoDAsync", unsafe {
            (self.retained.api.dtod_async)(dst, src, len, stream.raw)
        })
    }

    /// Queues setting `count` 32-bit words at device `dst` to zero on `stream`.
    ///
    /// # Safety
    /// `dst` must be device memory of this context with room for `count` words, valid
    /// until the stream has run the set.
    pub unsafe fn zero_async(
        &self,
        dst: u64,
        count: usize,
        stream: &Stream,
    ) -> Result<(), DriverError> {
        // SAFETY: per this function's contract.
        self.retained.api.check("cuMemsetD32Async", unsafe {
            (self.retained.api.memset_d32_async)(dst, 0, count, stream.raw)
        })
    }

    /// Copies `host.len()` values from device address `src` into `host`, waiting for
    /// the copy (work queued on non-blocking streams is not waited for: synchronise the
    /// stream that wrote `src` first).
    ///
    /// # Safety
    /// `src` must be device memory of this context holding `host.len()` values of `T`.
    pub unsafe fn copy_to_host<T: Copy>(
        &self,
        host: &mut [T],
        src: u64,
    ) -> Result<(), DriverError> {
        if host.is_empty() {
            return Ok(());
        }
        // SAFETY: `host` has room for what is copied; `src` per this function's contract.
        self.retained.api.check("cuMemcpyDtoH", unsafe {
            (self.retained.api.dtoh)(host.as_mut_ptr().cast(), src, std::mem::size_of_val(host))
        })
    }

    /// Copies `host` to device address `dst`.
    ///
    /// # Safety
    /// `dst` must be device memory of this context with room for `host`.
    pub unsafe fn copy_to_device<T: Copy>(&self, dst: u64, host: &[T]) -> Result<(), DriverError> {
        // SAFETY: per this function's contract.
        self.retained.api.check("cuMemcpyHtoD", unsafe {
            (self.retained.api.htod)(dst, host.as_ptr().cast(), std::mem::size_of_val(host))
        })
    }

    /// Copies `height` rows of `width` bytes, `pitch` apart on the device from `src`,
    /// into `dst` packed tightly (a decoded surface's plane to the host).
    pub fn copy_plane_to_host(
        &self,
        src: u64,
        pitch: usize,
        width: usize,
        height: usize,
        dst: &mut [u8],
    ) -> Result<(), DriverError> {
        if dst.len() < width * height || pitch < width {
            return Err(DriverError::Unavailable(format!(
                "a {width}x{height} plane does not fit {} bytes at pitch {pitch}",
                dst.len()
            )));
        }
        let copy = Memcpy2d {
            src_x_in_bytes: 0,
            src_y: 0,
            src_memory_type: MEMORY_DEVICE,
            src_host: std::ptr::null(),
            src_device: src,
            src_array: std::ptr::null_mut(),
            src_pitch: pitch,
            dst_x_in_bytes: 0,
            dst_y: 0,
            dst_memory_type: MEMORY_HOST,
            dst_host: dst.as_mut_ptr().cast(),
            dst_device: 0,
            dst_array: std::ptr::null_mut(),
            dst_pitch: width,
            width_in_bytes: width,
            height,
        };
        // SAFETY: `dst` holds width × height bytes (checked); the caller's `src` is a
        // device plane of `height` rows `pitch` apart.
        self.retained.api.check("cuMemcpy2D", unsafe {
            (self.retained.api.memcpy_2d)(&copy)
        })
    }

    /// Launches `function` on a 2-D grid covering `width`×`height` with 16×16 blocks.
    /// `args` are pointers to each kernel argument, in order.
    ///
    /// # Safety
    /// `args` must match the kernel's parameters in number, order and type, and every
    /// device pointer among them must be valid for what the kernel touches.
    pub unsafe fn launch_2d(
        &self,
        function: &Function<'_>,
        width: u32,
        height: u32,
        args: &mut [*mut c_void],
    ) -> Result<(), DriverError> {
        // SAFETY: per this function's contract.
        unsafe { self.launch_3d(function, width, height, 1, args) }
    }

    /// [`Context::launch_2d`] with `depth` layers of blocks (`blockIdx.z`): one launch
    /// for a batch.
    ///
    /// # Safety
    /// As for [`Context::launch_2d`].
    pub unsafe fn launch_3d(
        &self,
        function: &Function<'_>,
        width: u32,
        height: u32,
        depth: u32,
        args: &mut [*mut c_void],
    ) -> Result<(), DriverError> {
        // SAFETY: per this function's contract.
        unsafe { self.launch_on(None, function, (width, height, depth), args) }
    }

    /// [`Context::launch_3d`] on `stream` (`None`: the legacy default stream), without
    /// waiting for it.
    ///
    /// # Safety
    /// As for [`Context::launch_2d`]; the memory the kernel touches must stay valid
    /// until the stream has run it.
    pub unsafe fn launch_on(
        &self,
        stream: Option<&Stream>,
        function: &Function<'_>,
        (width, height, depth): (u32, u32, u32),
        args: &mut [*mut c_void],
    ) -> Result<(), DriverError> {
        let (bx, by) = (16, 16);
        let grid = (width.div_ceil(bx), height.div_ceil(by), depth.max(1));
        // SAFETY: per this function's contract.
        unsafe { self.launch_grid(stream, function, grid, (bx, by, 1), args) }
    }

    /// Launches `function` on `stream` (`None`: the legacy default stream) with `grid`
    /// blocks of `block` threads, without waiting for it.
    ///
    /// # Safety
    /// As for [`Context::launch_on`].
    pub unsafe fn launch_grid(
        &self,
        stream: Option<&Stream>,
        function: &Function<'_>,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        args: &mut [*mut c_void],
    ) -> Result<(), DriverError> {
        // SAFETY: per this function's contract.
        self.retained.api.check("cuLaunchKernel", unsafe {
            (self.retained.api.launch)(
                function.raw,
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                0,
                stream.map_or(std::ptr::null_mut(), |s| s.raw),
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        })
    }
}

/// A CUDA stream (non-blocking) of a [`Context`].
pub struct Stream {
    ctx: Arc<Retained>,
    raw: CuStream,
}

// SAFETY: a stream handle may be used from any thread on which its context is current.
unsafe impl Send for Stream {}
unsafe impl Sync for Stream {}

impl Stream {
    /// Waits until everything queued on the stream has run; reports a kernel's failure.
    pub fn synchronize(&self) -> Result<(), DriverError> {
        let api = self.ctx.api;
        // SAFETY: a stream we created.
        api.check("cuStreamSynchronize", unsafe {
            (api.stream_synchronize)(self.raw)
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.ctx.bind_for_free();
        // SAFETY: a stream we created, in a context still retained; pending work
        // completes before it is released.
        unsafe { (self.ctx.api.stream_destroy)(self.raw) };
    }
}

/// Page-locked host memory.
pub struct PinnedBuffer {
    ctx: Arc<Retained>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain host memory owned by this value.
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    /// Its bytes, to fill before a copy.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes allocated by cuMemHostAlloc, owned here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// Bytes it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        self.ctx.bind_for_free();
        // SAFETY: memory from cuMemHostAlloc, in a context still retained.
        unsafe { (self.ctx.api.free_host)(self.ptr.cast()) };
    }
}

/// A loaded module.
pub struct Module {
    ctx: Arc<Retained>,
    raw: CuModule,
}

// SAFETY: a module handle may be used from any thread on which its context is current;
// every user binds the context first.
unsafe impl Send for Module {}
unsafe impl Sync for Module {}

impl Module {
    /// One of its `extern "C"` kernels.
    pub fn function(&self, name: &str) -> Result<Function<'_>, DriverError> {
        let c =
            CString::new(name).map_err(|_| DriverError::Unavailable("bad kernel name".into()))?;
        let mut raw = std::ptr::null_mut();
        let api = self.ctx.api;
        // SAFETY: a loaded module and a NUL-terminated name.
        api.check("cuModuleGetFunction", unsafe {
            (api.module_get_function)(&mut raw, self.raw, c.as_ptr())
        })?;
        Ok(Function {
            raw,
            _module: std::marker::PhantomData,
        })
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        self.ctx.bind_for_free();
        // SAFETY: a module we loaded, in a context still retained.
        unsafe { (self.ctx.api.module_unload)(self.raw) };
    }
}

/// A kernel of a [`Module`].
pub struct Function<'m> {
    raw: CuFunction,
    _module: std::marker::PhantomData<&'m Module>,
}

/// Device memory holding `len` values of `T`.
pub struct DeviceBuffer<T> {
    ctx: Arc<Retained>,
    ptr: CuDevicePtr,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Copy + Default> DeviceBuffer<T> {
    /// The device address (what a kernel argument points to).
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// Elements it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies the buffer back to the host.
    pub fn download(&self) -> Result<Vec<T>, DriverError> {
        let mut host = vec![T::default(); self.len];
        let api = self.ctx.api;
        // SAFETY: `host` holds `len` elements, as the buffer does.
        api.check("cuMemcpyDtoH", unsafe {
            (api.dtoh)(
                host.as_mut_ptr().cast(),
                self.ptr,
                std::mem::size_of_val(host.as_slice()),
            )
        })?;
        Ok(host)
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        self.ctx.bind_for_free();
        // SAFETY: memory we allocated, in a context still retained.
        unsafe { (self.ctx.api.mem_free)(self.ptr) };
    }
}
