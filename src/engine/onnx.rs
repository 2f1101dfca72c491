//! The ONNX Runtime engine through `ort`, loaded at run time (`load-dynamic`): on the
//! CPU, or on a GPU through the providers [`super::providers`] configures. Inputs come
//! from host or device memory; a detector's output is copied to the host, or kept in
//! the session's memory for the next stage ([`Engine::run_kept`]). Models are checked
//! as they load by `engine/inspect.rs`.
//!
//! The shared library is found without the user setting anything: `ORT_DYLIB_PATH`
//! when set, else beside the executable, else the copy `scripts/setup.sh` puts in
//! `.cache/onnxruntime/` (looked up from the executable's directory upwards and from
//! the working directory), else the system's library path.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{OutputSelector, RunOptions, Session, SessionInputValue};
use ort::value::{Shape, Tensor, TensorRef, TensorRefMut};

use super::accel::Accel;
use super::inspect::{fixed_output_dims, inspect, inspect_recognizer};
pub use super::inspect::{DEFAULT_INPUT_SIZE, OCR_INPUT_HEIGHT, OCR_INPUT_WIDTH};
use super::{
    providers, BatchInput, BatchOutput, Engine, EngineError, KeptOutput, ModelKind, ModelSpec,
    OutputDims,
};

const BACKEND: &str = "cpu";
const LIB_NAME: &str = "libonnxruntime.so";

/// Where ONNX Runtime's shared library was looked for, in order.
pub fn library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent().map(Path::to_path_buf);
        if let Some(d) = &dir {
            out.push(d.join(LIB_NAME));
        }
        // target/{debug,release}/[deps/] → the repository's .cache/.
        for _ in 0..4 {
            let Some(d) = dir else { break };
            out.push(d.join(".cache/onnxruntime").join(LIB_NAME));
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(".cache/onnxruntime").join(LIB_NAME));
    }
    for dir in ["/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib"] {
        out.push(Path::new(dir).join(LIB_NAME));
    }
    out
}

/// The ONNX Runtime environment and the library it came from, created once per process
/// from the first library found.
fn loaded() -> &'static Result<(Environment, PathBuf), String> {
    static ENV: OnceLock<Result<(Environment, PathBuf), String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let candidates = library_candidates();
        let Some(lib) = candidates.iter().find(|p| p.is_file()) else {
            return Err(format!(
                "ONNX Runtime ({LIB_NAME}) not found; run scripts/setup.sh or set ORT_DYLIB_PATH (looked in {})",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        tracing::info!(library = %lib.display(), "Loading ONNX Runtime.");
        let env = ort::init_from(lib)
            .map_err(|e| format!("cannot load {}: {e}", lib.display()))?
            .with_name("kvs-infer")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", lib.display()))?;
        Ok((env, lib.clone()))
    })
}

fn unavailable(reason: &str) -> EngineError {
    EngineError::Unavailable {
        backend: BACKEND,
        reason: reason.to_owned(),
    }
}

/// The ONNX Runtime environment, loading the library on first use.
fn environment() -> Result<Environment, EngineError> {
    loaded()
        .as_ref()
        .map(|(env, _)| env.clone())
        .map_err(|r| unavailable(r))
}

/// The ONNX Runtime library in use, loading it on first use.
pub fn runtime_library() -> Result<PathBuf, EngineError> {
    loaded()
        .as_ref()
        .map(|(_, lib)| lib.clone())
        .map_err(|r| unavailable(r))
}

/// One ONNX Runtime session: on the CPU, or on a GPU through a provider.
pub struct OrtEngine {
    /// Allocates kept outputs ([`Engine::run_kept`]) in the session's memory; made on
    /// first need, and dropped before the session.
    allocator: Option<Allocator>,
    session: Session,
    spec: ModelSpec,
    name: &'static str,
    /// The GPU a CUDA or TensorRT session runs on.
    device: Option<i32>,
    /// A detector's output channels and anchors, once known: from the model when its
    /// output shape is fixed, else from the first batch run.
    out_dims: Option<(usize, usize)>,
}

impl OrtEngine {
    /// Loads `path` on the CPU with `intra_threads` threads and checks it is the `kind`
    /// of model expected.
    pub fn load(path: &Path, intra_threads: usize, kind: ModelKind) -> Result<Self, EngineError> {
        Self::load_with(path, intra_threads, kind, &Accel::Cpu)
    }

    /// [`OrtEngine::load`] with the session placed by `accel`. A GPU session is set up
    /// from what a CPU session learned of the model (its input name and size, for the
    /// TensorRT profile); a provider that cannot start is [`EngineError::Unavailable`].
    pub fn load_with(
        path: &Path,
        intra_threads: usize,
        kind: ModelKind,
        accel: &Accel,
    ) -> Result<Self, EngineError> {
        let model_err = |message: String| EngineError::Model {
            model: path.to_owned(),
            message,
        };
        if !path.is_file() {
            return Err(model_err("file not found".into()));
        }
        let env = environment()?;
        let session = Session::builder(&env)
            .and_then(|b| Ok(b.with_intra_threads(intra_threads.max(1))?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| model_err(format!("ONNX Runtime cannot load it: {e}")))?;
        let spec = match kind {
            ModelKind::Detector => inspect(path, &session),
            ModelKind::Recognizer => inspect_recognizer(path, &session),
        }
        .map_err(model_err)?;
        let out_dims = fixed_output_dims(&session, kind);
        if *accel == Accel::Cpu {
            return Ok(Self {
                allocator: None,
                session,
                spec,
                name: BACKEND,
                device: None,
                out_dims,
            });
        }
        drop(session);
        if let Accel::TensorRt(o) = accel {
            std::fs::create_dir_all(&o.cache_dir).map_err(|e| {
                model_err(format!(
                    "cannot create the engine cache {}: {e}",
                    o.cache_dir.display()
                ))
            })?;
        }
        let session = Session::builder(&env)
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|b| Ok(b.with_execution_providers(providers::dispatch(accel, &spec))?))
            .and_then(|mut b| b.commit_from_file(path))
            .map_err(|e| EngineError::Unavailable {
                backend: accel.name(),
                reason: format!("{}: {e}", path.display()),
            })?;
        let device = match accel {
            Accel::Cpu => None,
            Accel::Cuda { device_id } => Some(*device_id),
            Accel::TensorRt(o) => Some(o.device_id),
        };
        Ok(Self {
            allocator: None,
            session,
            spec,
            name: accel.name(),
            device,
            out_dims,
        })
    }
}

impl OrtEngine {
    fn run_error(&self, batch: usize, message: String) -> EngineError {
        EngineError::Run {
            model: self.spec.path.clone(),
            batch,
            message,
        }
    }

    /// The input's NCHW shape for `batch` images.
    fn input_shape(&self, batch: usize) -> [i64; 4] {
        [
            batch as i64,
            3,
            i64::from(self.spec.height),
            i64::from(self.spec.width),
        ]
    }

    /// Runs the session on `tensor` (host or device) and copies the output back.
    fn run_tensor(
        &mut self,
        tensor: SessionInputValue<'_>,
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<(), EngineError> {
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input_name.as_str() => tensor])
            .map_err(|e| e.to_string());
        let read = outputs.and_then(|o| read_output(&o, batch, output));
        read.map_err(|e| self.run_error(batch, e))?;
        if self.spec.kind == ModelKind::Detector {
            self.out_dims = Some((output.channels, output.anchors));
        }
        Ok(())
    }

    /// `batch` images at `input`, as the session's input tensor.
    fn input_tensor<'a>(
        &self,
        input: BatchInput<'a>,
        batch: usize,
    ) -> Result<SessionInputValue<'a>, EngineError> {
        let input = match input {
            BatchInput::Host(values) => {
                return Ok(
                    TensorRef::from_array_view((self.input_shape(batch), values))
                        .map_err(|e| self.run_error(batch, e.to_string()))?
                        .into(),
                )
            }
            BatchInput::Device(address) => address,
        };
        let Some(device) = self.device else {
            return Err(self.run_error(batch, "a CPU session cannot read device memory".into()));
        };
        let info = cuda_memory(device).map_err(|e| self.run_error(batch, e.to_string()))?;
        let shape = Shape::new(self.input_shape(batch));
        // SAFETY: the caller's `input` is device memory on `device` holding `batch`
        // NCHW f32 images of the model's size, alive for the run.
        let tensor =
            unsafe { TensorRefMut::<f32>::from_raw(info, input as usize as *mut _, shape) }
                .map_err(|e| self.run_error(batch, e.to_string()))?;
        Ok(tensor.into())
    }

    /// The allocator for outputs kept in the session's memory: the GPU's for a GPU
    /// session (ONNX Runtime's CUDA arena), the host's otherwise.
    fn kept_allocator(&mut self) -> Result<&Allocator, String> {
        if self.allocator.is_none() {
            let allocator = match self.device {
                None => Allocator::default(),
                Some(device) => cuda_memory(device)
                    .and_then(|info| Allocator::new(&self.session, info))
                    .map_err(|e| e.to_string())?,
            };
            self.allocator = Some(allocator);
        }
        Ok(self.allocator.as_ref().expect("set above"))
    }

    /// Runs the session on `tensor` into an output tensor of `dims` allocated in the
    /// session's memory, and returns it still there.
    fn run_into_kept(
        &mut self,
        tensor: SessionInputValue<'_>,
        dims: OutputDims,
    ) -> Result<KeptOutput, String> {
        let shape = [dims.batch, dims.channels, dims.anchors];
        let kept = Tensor::<f32>::new(self.kept_allocator()?, shape).map_err(|e| e.to_string())?;
        let ptr = kept.data_ptr() as usize as u64;
        let name = self
            .session
            .outputs()
            .first()
            .map(|o| o.name().to_owned())
            .ok_or("the model has no output")?;
        // The output is written into `kept` (ONNX Runtime's own allocation, so the run
        // needs no I/O binding, whose borrowed inputs ort cannot bind safely).
        let options = RunOptions::new().map_err(|e| e.to_string())?.with_outputs(
            OutputSelector::no_default()
                .with(&name)
                .preallocate(&name, kept),
        );
        let outputs = self
            .session
            .run_with_options(
                ort::inputs![self.spec.input_name.as_str() => tensor],
                &options,
            )
            .map_err(|e| e.to_string())?;
        let out = outputs[0]
            .view()
            .downcast::<ort::value::DynTensorValueType>()
            .map_err(|e| e.to_string())?;
        let got: Vec<i64> = out
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let want: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        if got != want || out.data_ptr() as usize as u64 != ptr {
            return Err(format!(
                "the output was not written where it was put: shape {got:?} for {want:?}"
            ));
        }
        drop(outputs);
        Ok(KeptOutput {
            ptr,
            device: self.device,
            dims,
            _keep: Box::new(options),
        })
    }
}

impl Engine for OrtEngine {
    fn name(&self) -> &'static str {
        self.name
    }

    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn run(
        &mut self,
        input: &[f32],
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<(), EngineError> {
        let tensor = self.input_tensor(BatchInput::Host(input), batch)?;
        self.run_tensor(tensor, batch, output)
    }

    fn device(&self) -> Option<i32> {
        self.device
    }

    fn run_device(
        &mut self,
        input: u64,
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<(), EngineError> {
        let tensor = self.input_tensor(BatchInput::Device(input), batch)?;
        self.run_tensor(tensor, batch, output)
    }

    /// Keeps a detector's output in the session's memory once its shape is known
    /// (device memory for a GPU session); the first batch of a model whose output
    /// shape is not fixed is run the plain way, which learns it.
    fn run_kept(
        &mut self,
        input: BatchInput<'_>,
        batch: usize,
        output: &mut BatchOutput,
    ) -> Result<Option<KeptOutput>, EngineError> {
        let tensor = self.input_tensor(input, batch)?;
        let Some((channels, anchors)) = self.out_dims else {
            return self.run_tensor(tensor, batch, output).map(|()| None);
        };
        let dims = OutputDims {
            batch,
            channels,
            anchors,
        };
        self.run_into_kept(tensor, dims)
            .map(Some)
            .map_err(|e| self.run_error(batch, e))
    }
}

/// Device memory on GPU `device`, as ONNX Runtime's CUDA provider allocates it.
fn cuda_memory(device: i32) -> ort::Result<MemoryInfo<'static>> {
    MemoryInfo::new(
        AllocationDevice::CUDA,
        device,
        AllocatorType::Device,
        MemoryType::Default,
    )
}

/// Copies a detector's or recogniser's 3-D output into `output`.
fn read_output(
    outputs: &ort::session::SessionOutputs<'_>,
    batch: usize,
    output: &mut BatchOutput,
) -> Result<(), String> {
    let (shape, data) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(|e| e.to_string())?;
    let [b, c, a] = shape[..] else {
        return Err(format!("output shape {:?} is not 3-D", &shape[..]));
    };
    if b as usize != batch || c < 1 || a < 1 {
        return Err(format!("unexpected output shape {:?}", &shape[..]));
    }
    output.data.clear();
    output.data.extend_from_slice(data);
    output.batch = batch;
    output.channels = c as usize;
    output.anchors = a as usize;
    Ok(())
}
