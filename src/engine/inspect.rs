//! Checking a model when it loads: that it is a YOLOv8-style detector or a
//! PP-OCR-style recogniser, and what it takes and gives (input size, batch limit,
//! classes or characters, output shape), so a wrong model is a start-up error that
//! says why, never a failure at the first batch.

use std::path::Path;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use super::{parse_names, ModelKind, ModelSpec};

/// Input size assumed when a detector leaves height and width dynamic.
pub const DEFAULT_INPUT_SIZE: u32 = 640;
/// Line height a recogniser is fed when its input height is dynamic (PP-OCR's).
pub const OCR_INPUT_HEIGHT: u32 = 48;
/// Line width a recogniser is fed when its input width is dynamic: crops are resized
/// to the height keeping aspect and padded to this, so crops from every camera batch.
pub const OCR_INPUT_WIDTH: u32 = 320;

/// A detector's output channels and anchors when the model fixes them.
pub(super) fn fixed_output_dims(session: &Session, kind: ModelKind) -> Option<(usize, usize)> {
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
pub(super) fn inspect(path: &Path, session: &Session) -> Result<ModelSpec, String> {
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
pub(super) fn inspect_recognizer(path: &Path, session: &Session) -> Result<ModelSpec, String> {
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
