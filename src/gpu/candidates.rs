//! The YOLO candidate stage on the GPU (`kernels/postprocess.cu`): a detector's output,
//! left in device memory by the engine ([`crate::engine::KeptOutput`]), is reduced on
//! the device to each image's candidates, and only those cross to the host. For
//! YOLOv8n at 640×640 that is a few hundred bytes per image instead of 84 × 8400
//! floats (2.7 MiB). NMS and mapping boxes back stay on the host
//! ([`crate::postprocess::yolo::from_candidates`]), where they cost microseconds.
//!
//! The CPU reference is [`crate::postprocess::yolo::candidates`]: the same anchors with
//! the same values, bit for bit, whatever order the GPU found them in
//! ([`check_parity`]).

use std::ffi::c_void;
use std::time::Instant;

use super::driver::{Context, DeviceBuffer, DriverError, Module, Stream};
use super::kernels::{images_for_device, load_first, Image, POSTPROCESS};
use super::prep::grown;
pub use crate::engine::OutputDims;
use crate::engine::{BatchOutput, KeptOutput};
use crate::postprocess::yolo::{candidates, Candidate};

/// The kernel's entry point.
pub const KERNEL: &str = "yolo_candidates";
/// Threads per block: one per anchor.
const BLOCK: u32 = 256;

/// The seam between an engine worker and the stage that reduces a detector's kept
/// output ([`crate::engine::KeptOutput`]) to candidates where it lies.
pub trait CandidateStage: Send {
    /// Each image's candidates in `kept` (the anchors whose best of the first
    /// `classes` classes scores at least `conf`), in any order.
    fn candidates(
        &mut self,
        kept: &KeptOutput,
        classes: usize,
        conf: f32,
    ) -> Result<Vec<Vec<Candidate>>, String>;

    /// The whole of `kept` brought into `output`: the way out when
    /// [`CandidateStage::candidates`] fails.
    fn read_back(&mut self, kept: &KeptOutput, output: &mut BatchOutput) -> Result<(), String>;
}

/// The candidate kernel loaded on one GPU, with its own stream and buffers (kept and
/// grown, never allocated per batch).
pub struct GpuCandidates {
    ctx: Context,
    module: Module,
    stream: Stream,
    counts: Option<DeviceBuffer<u32>>,
    found: Option<DeviceBuffer<Candidate>>,
}

impl GpuCandidates {
    /// Loads the first of `images` (best first) that GPU `ordinal` accepts; the kind
    /// loaded is returned with it.
    pub fn load(ordinal: i32, images: &[Image]) -> Result<(Self, &'static str), DriverError> {
        let ctx = Context::new(ordinal)?;
        let (module, kind) = load_first(&ctx, images)?;
        let stream = ctx.stream()?;
        let gpu = Self {
            ctx,
            module,
            stream,
            counts: None,
            found: None,
        };
        Ok((gpu, kind))
    }

    /// Loads the kernel for GPU `device_id` of this host, compiled by NVRTC or from the
    /// cache in `kernel_cache`.
    pub fn new(device_id: i32, kernel_cache: &std::path::Path) -> Result<Self, String> {
        let images = images_for_device(device_id, &POSTPROCESS, kernel_cache)?;
        Self::load(device_id, &images)
            .map(|(gpu, _)| gpu)
            .map_err(|e| e.to_string())
    }

    /// The context the kernel runs in.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Each image's candidates in the f32 output at device address `output` (complete:
    /// the engine's run has returned), the anchors whose best of the first `classes`
    /// classes scores at least `conf`, in no particular order. Waits for them.
    pub fn run(
        &mut self,
        output: u64,
        dims: OutputDims,
        classes: usize,
        conf: f32,
    ) -> Result<Vec<Vec<Candidate>>, DriverError> {
        let OutputDims {
            batch,
            channels,
            anchors,
        } = dims;
        if classes == 0 || 4 + classes > channels || batch == 0 || anchors == 0 {
            return Err(DriverError::Unavailable(format!(
                "{classes} classes do not fit a [{batch}, {channels}, {anchors}] output"
            )));
        }
        let ctx = &self.ctx;
        ctx.bind()?;
        grown(&mut self.counts, batch, DeviceBuffer::len, |l| ctx.alloc(l))?;
        grown(&mut self.found, batch * anchors, DeviceBuffer::len, |l| {
            ctx.alloc(l)
        })?;
        let (Some(counts), Some(found)) = (&self.counts, &self.found) else {
            unreachable!("grown above");
        };
        let function = self.module.function(KERNEL)?;
        let (mut out_ptr, mut counts_ptr, mut found_ptr) =
            (output, counts.device_ptr(), found.device_ptr());
        let (mut c, mut k, mut a, mut threshold) =
            (channels as i32, classes as i32, anchors as i32, conf);
        let mut args: [*mut c_void; 7] = [
            (&mut out_ptr as *mut u64).cast(),
            (&mut c as *mut i32).cast(),
            (&mut k as *mut i32).cast(),
            (&mut a as *mut i32).cast(),
            (&mut threshold as *mut f32).cast(),
            (&mut counts_ptr as *mut u64).cast(),
            (&mut found_ptr as *mut u64).cast(),
        ];
        let grid = ((anchors as u32).div_ceil(BLOCK), batch as u32, 1);
        // SAFETY: the arguments follow `yolo_candidates`'s parameters; `output` holds
        // `batch` images of `channels` × `anchors` (the caller's), `counts` `batch`
        // words and `found` `batch` × `anchors` candidates (grown above), all alive
        // until the synchronise below.
        unsafe {
            ctx.zero_async(counts_ptr, batch, &self.stream)?;
            ctx.launch_grid(
                Some(&self.stream),
                &function,
                grid,
                (BLOCK, 1, 1),
                &mut args,
            )?;
        }
        self.stream.synchronize()?;
        let mut n = vec![0u32; batch];
        // SAFETY: `counts` holds `batch` words, written by the finished launch.
        unsafe { ctx.copy_to_host(&mut n, counts_ptr)? };
        let n: Vec<usize> = n.iter().map(|&k| (k as usize).min(anchors)).collect();
        // One pitched copy brings back the longest list's length from every image.
        let longest = n.iter().copied().max().unwrap_or(0);
        let mut lists = vec![Candidate::default(); batch * longest];
        if longest > 0 {
            let size = std::mem::size_of::<Candidate>();
            // SAFETY: Candidate is repr(C) of seven 4-byte fields (no padding, every
            // bit pattern valid), so its storage may be written as bytes.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(lists.as_mut_ptr().cast::<u8>(), lists.len() * size)
            };
            ctx.copy_plane_to_host(found_ptr, anchors * size, longest * size, batch, bytes)?;
        }
        Ok(n.iter()
            .enumerate()
            .map(|(b, &k)| lists[b * longest..b * longest + k].to_vec())
            .collect())
    }
}

impl CandidateStage for GpuCandidates {
    fn candidates(
        &mut self,
        kept: &KeptOutput,
        classes: usize,
        conf: f32,
    ) -> Result<Vec<Vec<Candidate>>, String> {
        if kept.device.is_none() {
            return Err("the output is in host memory, not on the GPU".into());
        }
        self.run(kept.ptr, kept.dims, classes, conf)
            .map_err(|e| e.to_string())
    }

    fn read_back(&mut self, kept: &KeptOutput, output: &mut BatchOutput) -> Result<(), String> {
        let OutputDims {
            batch,
            channels,
            anchors,
        } = kept.dims;
        if let Some(values) = kept.host_values() {
            output.data.clear();
            output.data.extend_from_slice(values);
        } else {
            output.data.resize(batch * channels * anchors, 0.0);
            self.ctx.bind().map_err(|e| e.to_string())?;
            // SAFETY: the kept output holds exactly these values in this GPU's memory,
            // complete (the engine's run has returned) and alive while `kept` is.
            unsafe { self.ctx.copy_to_host(&mut output.data, kept.ptr) }
                .map_err(|e| e.to_string())?;
        }
        (output.batch, output.channels, output.anchors) = (batch, channels, anchors);
        Ok(())
    }
}

/// One synthetic output the kernel is checked on.
#[derive(Debug, Clone)]
pub struct ParityCase {
    /// What it exercises.
    pub name: &'static str,
    /// `[batch, channels, anchors]` values.
    pub output: Vec<f32>,
    /// Its shape.
    pub dims: OutputDims,
    /// Classes among the channels.
    pub classes: usize,
    /// The threshold.
    pub conf: f32,
}

/// Scores on a grid of `1 / steps` from a fixed generator: exact ties between classes
/// and scores exactly at the threshold, the cases where a careless kernel and the
/// reference disagree. A class score passes 0.25 with probability `rate`; a coarse
/// grid with a high rate makes ties among passing classes common.
fn synthetic(dims: OutputDims, classes: usize, (rate, steps): (f32, f32), seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32) / (1u64 << 24) as f32
    };
    let OutputDims {
        batch,
        channels,
        anchors,
    } = dims;
    let mut out = vec![0f32; batch * channels * anchors];
    for image in out.chunks_mut(channels * anchors) {
        for (ch, row) in image.chunks_mut(anchors).enumerate() {
            for v in row.iter_mut() {
                let r = next();
                *v = match ch {
                    0..4 => r * 640.0,
                    c if c < 4 + classes => {
                        // Mostly low, a few at or over the threshold, on the grid.
                        let s = if r < rate {
                            0.25 + r / rate * 0.75
                        } else {
                            r * 0.25
                        };
                        (s * steps).floor() / steps
                    }
                    _ => r * 2.0 - 1.0, // mask coefficients, ignored
                };
            }
        }
    }
    out
}

/// The outputs the kernel is checked on: YOLOv8n's shape at batch 1 and 8, one where
/// passing anchors often have several classes at their best score (so the first of
/// equals must win), one with mask channels after the classes, one where nothing
/// passes, and one small odd anchor count that leaves a partial block.
pub fn parity_cases() -> Vec<ParityCase> {
    let case = |name, batch, channels, anchors, classes, rate, conf, seed| {
        let dims = OutputDims {
            batch,
            channels,
            anchors,
        };
        ParityCase {
            name,
            output: synthetic(dims, classes, rate, seed),
            dims,
            classes,
            conf,
        }
    };
    vec![
        case("yolov8n b1", 1, 84, 8400, 80, (0.0001, 64.0), 0.25, 1),
        case("yolov8n b8", 8, 84, 8400, 80, (0.0001, 64.0), 0.25, 2),
        case(
            "ties among passing classes",
            2,
            8,
            2000,
            4,
            (0.3, 4.0),
            0.25,
            6,
        ),
        case(
            "masks after classes",
            2,
            4 + 2 + 32,
            1000,
            2,
            (0.02, 64.0),
            0.25,
            3,
        ),
        case("nothing passes", 2, 84, 8400, 80, (0.001, 64.0), 1.5, 4),
        case("partial block", 3, 5, 257, 1, (0.2, 64.0), 0.25, 5),
    ]
}

/// Each image's reference candidates for `case`, in anchor order.
pub fn reference(case: &ParityCase) -> Vec<Vec<Candidate>> {
    let per_image = case.dims.channels * case.dims.anchors;
    case.output
        .chunks(per_image)
        .map(|image| candidates(image, case.dims.anchors, case.classes, case.conf))
        .collect()
}

/// Whether two candidate lists hold the same candidates in the same order, bit for bit
/// (so a NaN equals itself and 0.0 differs from -0.0).
pub fn bit_equal(a: &[Candidate], b: &[Candidate]) -> bool {
    let bits = |c: &Candidate| {
        [
            c.cx.to_bits(),
            c.cy.to_bits(),
            c.w.to_bits(),
            c.h.to_bits(),
            c.score.to_bits(),
            c.class_id,
            c.anchor,
        ]
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| bits(x) == bits(y))
}

/// One parity check's outcome.
#[derive(Debug, Clone)]
pub struct ParityRow {
    /// The case.
    pub name: &'static str,
    /// Its shape.
    pub dims: OutputDims,
    /// Candidates found in the whole batch (by the reference).
    pub candidates: usize,
    /// Whether every image's candidates equal the reference's, bit for bit.
    pub equal: bool,
    /// Mean time of a [`GpuCandidates::run`] (launch, wait, copies back), µs.
    pub micros: f64,
    /// Bytes that came back, against the whole output's.
    pub bytes_back: usize,
    /// The whole output's bytes.
    pub bytes_full: usize,
}

/// Runs every [`parity_cases`] case on the GPU `runs` times and compares the last
/// result with the reference.
pub fn check_parity(gpu: &mut GpuCandidates, runs: usize) -> Result<Vec<ParityRow>, DriverError> {
    let mut rows = Vec::new();
    for case in parity_cases() {
        gpu.context().bind()?;
        let output = gpu.context().upload(&case.output)?;
        let mut found = Vec::new();
        let started = Instant::now();
        for _ in 0..runs.max(1) {
            found = gpu.run(output.device_ptr(), case.dims, case.classes, case.conf)?;
        }
        let micros = started.elapsed().as_secs_f64() * 1e6 / runs.max(1) as f64;
        let expected = reference(&case);
        for list in &mut found {
            list.sort_by_key(|c| c.anchor);
        }
        let longest = found.iter().map(Vec::len).max().unwrap_or(0);
        rows.push(ParityRow {
            name: case.name,
            dims: case.dims,
            candidates: expected.iter().map(Vec::len).sum(),
            equal: found.len() == expected.len()
                && found.iter().zip(&expected).all(|(a, b)| bit_equal(a, b)),
            micros,
            bytes_back: 4 * case.dims.batch
                + case.dims.batch * longest * std::mem::size_of::<Candidate>(),
            bytes_full: 4 * case.output.len(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_laid_out_as_the_kernel_writes_them() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<Candidate>(), 28);
        let offsets = [
            offset_of!(Candidate, cx),
            offset_of!(Candidate, cy),
            offset_of!(Candidate, w),
            offset_of!(Candidate, h),
            offset_of!(Candidate, score),
            offset_of!(Candidate, class_id),
            offset_of!(Candidate, anchor),
        ];
        assert_eq!(offsets, [0, 4, 8, 12, 16, 20, 24]);
        let source = POSTPROCESS.source;
        let fields: Vec<&str> = source[source.find("struct Candidate {").unwrap()..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with('}'))
            .map(str::trim)
            .collect();
        assert_eq!(
            fields,
            [
                "float cx;",
                "float cy;",
                "float w;",
                "float h;",
                "float score;",
                "unsigned int class_id;",
                "unsigned int anchor;"
            ]
        );
    }

    #[test]
    fn the_parity_cases_exercise_ties_thresholds_masks_and_empty_images() {
        let cases = parity_cases();
        for case in &cases {
            assert_eq!(
                case.output.len(),
                case.dims.batch * case.dims.channels * case.dims.anchors
            );
        }
        let by_name = |n: &str| cases.iter().find(|c| c.name == n).unwrap();
        let b8 = reference(by_name("yolov8n b8"));
        assert!(
            b8.iter().all(|l| !l.is_empty() && l.len() < 200),
            "{:?}",
            b8.iter().map(Vec::len).collect::<Vec<_>>()
        );
        assert!(reference(by_name("nothing passes"))
            .iter()
            .all(Vec::is_empty));
        // Exactly at the threshold passes: some candidates score exactly 0.25.
        let all: Vec<Candidate> = cases.iter().flat_map(reference).flatten().collect();
        assert!(all.iter().any(|c| c.score == 0.25));
        // The first-of-equals rule is exercised: many candidates have their best score
        // in more than one class.
        let case = by_name("ties among passing classes");
        let a = case.dims.anchors;
        let image = &case.output[..case.dims.channels * a];
        let tied = reference(case)[0]
            .iter()
            .filter(|cand| {
                let at = |c: usize| image[(4 + c) * a + cand.anchor as usize];
                (0..case.classes).filter(|&c| at(c) == cand.score).count() > 1
            })
            .count();
        assert!(tied > 50, "{tied} tied candidates");
        // Masks: channels past the classes are not read as classes.
        let masks = by_name("masks after classes");
        assert!(masks.dims.channels > 4 + masks.classes);
        assert!(reference(masks).iter().flatten().all(|c| c.class_id < 2));
        // A partial last block.
        assert_ne!(by_name("partial block").dims.anchors % BLOCK as usize, 0);
    }

    #[test]
    fn lists_compare_bit_for_bit_in_order() {
        let a = Candidate {
            cx: 1.0,
            score: 0.5,
            anchor: 3,
            ..Candidate::default()
        };
        let b = Candidate { anchor: 4, ..a };
        assert!(bit_equal(&[a, b], &[a, b]));
        assert!(!bit_equal(&[a, b], &[b, a]));
        assert!(!bit_equal(&[a], &[a, b]));
        assert!(!bit_equal(&[a], &[Candidate { cx: -0.0, ..a }]));
        assert!(!bit_equal(
            &[Candidate { cx: 0.0, ..a }],
            &[Candidate { cx: -0.0, ..a }]
        ));
        let nan = Candidate { h: f32::NAN, ..a };
        assert!(bit_equal(&[nan], &[nan]));
    }

    #[test]
    fn without_a_gpu_loading_the_kernel_says_why() {
        if crate::gpu::probe().is_available() {
            return; // tests/gpu.rs runs the kernel there.
        }
        let err = GpuCandidates::new(0, &std::env::temp_dir().join("kvs-infer-cand-kernels"))
            .err()
            .expect("no GPU");
        assert!(err.contains("no usable GPU"), "{err}");
    }
}
