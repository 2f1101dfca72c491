//! The GPU path's foundations: finding a usable NVIDIA GPU at run time ([`probe`]), our
//! CUDA preprocessing kernels (`kernels/*.cu`) compiled by a runtime-loaded NVRTC
//! ([`nvrtc`], [`kernels`]), a thin driver shim to run them ([`driver`]), and running
//! them against their CPU references ([`letterbox`], [`batch`], [`candidates`]).
//!
//! Nothing here links CUDA: the driver (`libcuda.so.1`) and NVRTC (`libnvrtc.so.12`) are
//! opened with `dlopen` when asked for, so the server builds and runs on machines
//! without them and says why the GPU is not used. The CPU preprocessing in
//! [`crate::preprocess::cpu`] is the kernels' reference.

pub mod batch;
pub mod candidates;
pub mod devframe;
pub mod driver;
pub mod kernels;
pub mod letterbox;
pub mod nvdec;
pub mod nvrtc;
pub mod prep;
pub mod probe;
pub mod tensorrt;

pub use probe::{probe, GpuDevice, GpuStatus};
