//! The ONNX Runtime engine through `ort`, loaded at run time (`load-dynamic`): on the
//! CPU, or on a GPU through the providers [`super::providers`] configures.
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
use ort::value::{Shape, Tensor, TensorElementType, TensorRef, TensorRefMut, ValueType};

use super::accel::Accel;
use super::{
    parse_names, providers, BatchInput, BatchOutput, Engine, EngineError, KeptOutput, ModelKind,
    ModelSpec, OutputDims,
};

const BACKEND: &str = "cpu";
const LIB_NAME: &str = "libonnxruntime.so";
/// Input size assumed when a detector leaves height and width dynamic.
pub const DEFAULT_INPUT_SIZE: u32 = 640;
/// Line height a recogniser is fed when its input height is dynamic (PP-OCR's).
pub const OCR_INPUT_HEIGHT: u32 = 48;
/// Line width a recogniser is fed when its input width is dynamic: crops are resized
/// to the height keeping aspect and padded to this, so crops from every camera batch.
pub const OCR_INPUT_WIDTH: u32 = 320;

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

/// A detector's output channels and anchors when the model fixes them.
fn fixed_output_dims(session: &Session, kind: ModelKind) -> Option<(usize, usize)> {
    if kind != ModelKind::Detector {
        return None;
    }
    let (_, shape) = dims(session.outputs().first()?.dtype())?;
    match shape[..] {
        [_, c, a] if c > 0 && a > 0 => Some((c as usize, a as usize)),
        _ => None,
    }
}

fn dims(value: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    Some((
        value.tensor_type()?,
        value.tensor_shape()?.iter().copied().collect(),
    ))
}

/// Reads input size, batch limit and class names, and checks the YOLOv8 layout:
/// one f32 NCHW image input, one `[batch, 4 + classes (+ masks), anchors]` output.
fn inspect(path: &Path, session: &Session) -> Result<ModelSpec, String> {
    const NOT_YOLO: &str = "is not a YOLOv8-style detector";
    let [input] = session.inputs() else {
        return Err(format!(
            "{NOT_YOLO}: it has {} inputs, expected 1 image input",
            session.inputs().len()
        ));
    };
    let (ty, shape) =
        dims(input.dtype()).ok_or_else(|| format!("{NOT_YOLO}: its input is not a tensor"))?;
    if ty != TensorElementType::Float32 || shape.len() != 4 || !(shape[1] == 3 || shape[1] < 0) {
        return Err(format!("{NOT_YOLO}: input {:?} is {ty:?} {shape:?}, expected float32 [batch, 3, height, width]", input.name()));
    }
    let size = |d: i64| if d > 0 { d as u32 } else { DEFAULT_INPUT_SIZE };
    let (height, width) = (size(shape[2]), size(shape[3]));
    let max_batch = (shape[0] > 0).then_some(shape[0] as u32);

    let output = session
        .outputs()
        .first()
        .ok_or_else(|| format!("{NOT_YOLO}: it has no output"))?;
    let (ty, out_shape) =
        dims(output.dtype()).ok_or_else(|| format!("{NOT_YOLO}: its output is not a tensor"))?;
    if ty != TensorElementType::Float32 || out_shape.len() != 3 {
        return Err(format!(
            "{NOT_YOLO}: output {:?} is {ty:?} {out_shape:?}, expected float32 [batch, 4 + classes, anchors]",
            output.name()
        ));
    }
    let channels = out_shape[1];
    let names = session
        .metadata()
        .ok()
        .and_then(|m| m.custom("names"))
        .and_then(|text| parse_names(&text));
    let names = match (names, channels) {
        (Some(names), c) if c < 0 || names.len() + 4 <= c as usize => names,
        (Some(names), c) => {
            return Err(format!(
                "{NOT_YOLO}: output has {c} channels but the `names` metadata lists {} classes (needs 4 + classes)",
                names.len()
            ))
        }
        (None, c) if c > 4 => (0..c - 4).map(|i| format!("class_{i}")).collect(),
        (None, c) => return Err(format!("{NOT_YOLO}: output has {c} channels and no `names` metadata")),
    };
    if names.is_empty() {
        return Err(format!("{NOT_YOLO}: it has no classes"));
    }
    let random_weights = session
        .metadata()
        .ok()
        .and_then(|m| m.custom("kvs_infer_random_weights"))
        .is_some_and(|v| v == "true");
    Ok(ModelSpec {
        kind: ModelKind::Detector,
        path: path.to_owned(),
        input_name: input.name().to_owned(),
        width,
        height,
        max_batch,
        names,
        random_weights,
    })
}

/// Checks a PP-OCR-style recogniser: one f32 `[batch, 3, 48, width]` input, one
/// `[batch, steps, classes]` output, and the character list in the `character`
/// metadata (newline-separated; class 0 is the CTC blank).
fn inspect_recognizer(path: &Path, session: &Session) -> Result<ModelSpec, String> {
    const NOT_OCR: &str = "is not a PP-OCR-style text recogniser";
    let [input] = session.inputs() else {
        return Err(format!(
            "{NOT_OCR}: it has {} inputs, expected 1",
            session.inputs().len()
        ));
    };
    let (ty, shape) =
        dims(input.dtype()).ok_or_else(|| format!("{NOT_OCR}: its input is not a tensor"))?;
    if ty != TensorElementType::Float32 || shape.len() != 4 {
        return Err(format!(
            "{NOT_OCR}: input is {ty:?} {shape:?}, expected float32 [batch, 3, 48, width]"
        ));
    }
    let height = if shape[2] > 0 {
        shape[2] as u32
    } else {
        OCR_INPUT_HEIGHT
    };
    let width = if shape[3] > 0 {
        shape[3] as u32
    } else {
        OCR_INPUT_WIDTH
    };
    let output = session
        .outputs()
        .first()
        .ok_or_else(|| format!("{NOT_OCR}: it has no output"))?;
    let (_, out_shape) =
        dims(output.dtype()).ok_or_else(|| format!("{NOT_OCR}: its output is not a tensor"))?;
    if out_shape.len() != 3 {
        return Err(format!(
            "{NOT_OCR}: output is {out_shape:?}, expected [batch, steps, classes]"
        ));
    }
    let charset: Vec<String> = session
        .metadata()
        .ok()
        .and_then(|m| m.custom("character"))
        .map(|text| text.split('\n').map(str::to_owned).collect())
        .ok_or_else(|| {
            format!("{NOT_OCR}: it has no `character` metadata listing its characters")
        })?;
    let classes = out_shape[2];
    if classes > 0 && (charset.len() + 1 > classes as usize || charset.len() + 2 < classes as usize)
    {
        return Err(format!(
            "{NOT_OCR}: output has {classes} classes but `character` lists {} characters",
            charset.len()
        ));
    }
    Ok(ModelSpec {
        kind: ModelKind::Recognizer,
        path: path.to_owned(),
        input_name: input.name().to_owned(),
        width,
        height,
        max_batch: (shape[0] > 0).then_some(shape[0] as u32),
        names: charset,
        random_weights: false,
    })
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
        let info = MemoryInfo::new(
            AllocationDevice::CUDA,
            device,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(|e| self.run_error(batch, e.to_string()))?;
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
                Some(device) => {
                    let info = MemoryInfo::new(
                        AllocationDevice::CUDA,
                        device,
                        AllocatorType::Device,
                        MemoryType::Default,
                    )
                    .map_err(|e| e.to_string())?;
                    Allocator::new(&self.session, info).map_err(|e| e.to_string())?
                }
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
