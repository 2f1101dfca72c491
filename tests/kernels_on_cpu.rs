//! Our CUDA kernels' logic on every machine: their sources, exactly as NVRTC compiles
//! them, are built for the CPU with the host's C++ compiler and a small stand-in for
//! CUDA's built-ins (`tests/support/cuda_on_cpu.cpp`), launched with the server's
//! grids, and compared with their CPU references: the letterbox kernels (every layout
//! and precision, one frame and a mixed batch, and a batch as the engine workers stage
//! it) and the YOLO candidate kernel (bit for bit). A GPU still has the last word (tests/gpu.rs, bench/gpu-check.sh); this catches
//! a wrong index, offset, tap or tie-break before GPU time is spent on it.

mod common;

use std::ffi::c_void;
use std::sync::OnceLock;

use common::{build_support_library, skip};
use kvs_infer::decode::Frame;
use kvs_infer::gpu::batch::{BatchJob, DevicePlanes};
use kvs_infer::gpu::letterbox::{
    interleave_uv, max_abs_diff, max_ulp_diff, parity_cases, reference, Layout, Precision,
    SlotData, F16_TOLERANCE_ULP, F32_TOLERANCE,
};
use kvs_infer::postprocess::yolo::Candidate;

type BatchFn = unsafe extern "C" fn(i32, *const BatchJob, i32, i32, i32, *mut c_void);
type SingleFn = unsafe extern "C" fn(i32, i32, *const BatchJob, i32, i32, *mut c_void);
type CandidatesFn =
    unsafe extern "C" fn(*const f32, i32, i32, i32, i32, f32, *mut u32, *mut Candidate);

/// The kernels built for the CPU, once per test run; `None` (reported as a skip) where
/// this machine has no C++ compiler.
fn kernels() -> Option<&'static libloading::Library> {
    static LIB: OnceLock<Result<libloading::Library, String>> = OnceLock::new();
    let built = LIB.get_or_init(|| {
        let lib = build_support_library("kernels-on-cpu", "cuda_on_cpu.cpp", &[])?;
        // SAFETY: a library we just built, with no initialisers of note.
        Ok(unsafe { libloading::Library::new(&lib) }.unwrap())
    });
    match built {
        Ok(lib) => Some(lib),
        Err(why) => {
            skip(why);
            None
        }
    }
}

fn symbol<T: Copy>(lib: &libloading::Library, name: &str) -> T {
    // SAFETY: each name is an `extern "C"` function of cuda_on_cpu.cpp of type T.
    *unsafe { lib.get::<T>(name.as_bytes()) }.unwrap()
}

/// A frame's planes in host memory, laid out as the kernel reads them in `layout`,
/// kept alive beside their description.
struct Planes {
    _bytes: Vec<Vec<u8>>,
    planes: DevicePlanes,
}

fn planes(frame: &Frame, layout: Layout) -> Planes {
    let [y, u, v] = frame.planes().clone();
    let addr = |p: &Vec<u8>| p.as_ptr() as u64;
    match layout {
        Layout::I420 => {
            let planes = DevicePlanes {
                y: addr(&y),
                u: addr(&u),
                v: addr(&v),
                y_stride: frame.width,
                uv_stride: frame.width / 2,
                layout,
                width: frame.width,
                height: frame.height,
                matrix: frame.matrix,
            };
            Planes {
                _bytes: vec![y, u, v],
                planes,
            }
        }
        Layout::Nv12 => {
            let uv = interleave_uv(&u, &v);
            let planes = DevicePlanes::nv12(
                (addr(&y), addr(&uv), frame.width as usize),
                frame.width,
                frame.height,
                frame.matrix,
            );
            Planes {
                _bytes: vec![y, uv],
                planes,
            }
        }
    }
}

/// A zeroed `slots`-slot output of `precision`, its address, and a way to read slot `k`.
enum Out {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Out {
    fn new(precision: Precision, len: usize) -> Self {
        match precision {
            Precision::F32 => Out::F32(vec![0.0; len]),
            Precision::F16 => Out::F16(vec![0; len]),
        }
    }
    fn ptr(&mut self) -> *mut c_void {
        match self {
            Out::F32(v) => v.as_mut_ptr().cast(),
            Out::F16(v) => v.as_mut_ptr().cast(),
        }
    }
    /// How far slot `k` is from `want`, and whether that is within tolerance.
    fn compare(&self, k: usize, area: usize, want: &SlotData) -> (f64, bool) {
        match (self, want) {
            (Out::F32(got), SlotData::F32(want)) => {
                let e = max_abs_diff(&got[k * area..(k + 1) * area], want);
                (f64::from(e), e <= F32_TOLERANCE)
            }
            (Out::F16(got), SlotData::F16(want)) => {
                let e = max_ulp_diff(&got[k * area..(k + 1) * area], want);
                (f64::from(e), e <= F16_TOLERANCE_ULP)
            }
            _ => (f64::INFINITY, false),
        }
    }
    fn slot_is_zero(&self, k: usize, area: usize) -> bool {
        match self {
            Out::F32(v) => v[k * area..(k + 1) * area].iter().all(|&x| x == 0.0),
            Out::F16(v) => v[k * area..(k + 1) * area].iter().all(|&x| x == 0),
        }
    }
}

/// The batch kernel, run on the CPU for `jobs` into slots of a `dst_w`×`dst_h` tensor
/// of `precision` (slot `k` for job `k`, as the jobs say).
///
/// # Safety
/// Every job's planes must be alive host memory holding its picture.
unsafe fn run_batch(
    lib: &libloading::Library,
    precision: Precision,
    jobs: &[BatchJob],
    (dst_w, dst_h): (u32, u32),
) -> Out {
    let batch: BatchFn = symbol(lib, "cpu_letterbox_batch");
    let mut out = Out::new(precision, jobs.len() * 3 * (dst_w * dst_h) as usize);
    // SAFETY: the jobs per this function's contract; `out` holds a slot per job.
    unsafe {
        batch(
            i32::from(precision == Precision::F16),
            jobs.as_ptr(),
            jobs.len() as i32,
            dst_w as i32,
            dst_h as i32,
            out.ptr(),
        )
    };
    out
}

#[test]
fn each_one_frame_letterbox_kernel_matches_the_cpu_reference_and_writes_only_its_slot() {
    let Some(lib) = kernels() else { return };
    let single: SingleFn = symbol(lib, "cpu_letterbox_single");
    let mut failures = Vec::new();
    for (case, frame, dst_w, dst_h) in parity_cases() {
        let area = 3 * (dst_w * dst_h) as usize;
        for layout in [Layout::I420, Layout::Nv12] {
            let held = planes(&frame, layout);
            let job = held.planes.job(dst_w, dst_h, 1);
            for precision in [Precision::F32, Precision::F16] {
                let mut out = Out::new(precision, 2 * area);
                // SAFETY: the job's planes are alive in `held`; `out` holds two slots.
                unsafe {
                    single(
                        i32::from(layout == Layout::Nv12),
                        i32::from(precision == Precision::F16),
                        &job,
                        dst_w as i32,
                        dst_h as i32,
                        out.ptr(),
                    )
                };
                let (err, within) =
                    out.compare(1, area, &reference(&frame, dst_w, dst_h, precision));
                if !within || !out.slot_is_zero(0, area) {
                    failures.push(format!("{case} {layout:?} {precision:?}: error {err}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `frame` as NVDEC lays out a surface: NV12 rows `pitch` bytes apart with junk after
/// each row, and the chroma plane after a luma plane of `surface_height` rows.
fn nvdec_surface(frame: &Frame, pitch: usize, surface_height: usize) -> Vec<u8> {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let [y, u, v] = frame.planes();
    let uv = interleave_uv(u, v);
    let mut surface = vec![0xEEu8; pitch * (surface_height + h.div_ceil(2))];
    for row in 0..h {
        surface[row * pitch..row * pitch + w].copy_from_slice(&y[row * w..(row + 1) * w]);
    }
    let chroma = pitch * surface_height;
    for row in 0..h / 2 {
        let at = chroma + row * pitch;
        surface[at..at + w].copy_from_slice(&uv[row * w..(row + 1) * w]);
    }
    surface
}

#[test]
fn pitched_nvdec_surfaces_are_read_within_their_rows() {
    let Some(lib) = kernels() else { return };
    for (case, frame, dst_w, dst_h) in parity_cases() {
        // NVDEC's pitch is the width rounded up (to 512 here, at least 256 more), and
        // its surfaces are taller than the picture (rounded up to 16 rows, and more).
        let pitch = (frame.width as usize + 256).next_multiple_of(512);
        let surface_height = (frame.height as usize).next_multiple_of(16) + 16;
        let surface = nvdec_surface(&frame, pitch, surface_height);
        let y = surface.as_ptr() as u64;
        let planes = DevicePlanes::nv12(
            (y, y + (pitch * surface_height) as u64, pitch),
            frame.width,
            frame.height,
            frame.matrix,
        );
        let job = planes.job(dst_w, dst_h, 0);
        let area = 3 * (dst_w * dst_h) as usize;
        // SAFETY: the job points into `surface`, alive.
        let out = unsafe { run_batch(lib, Precision::F32, &[job], (dst_w, dst_h)) };
        let (err, within) = out.compare(0, area, &reference(&frame, dst_w, dst_h, Precision::F32));
        assert!(within, "{case}: error {err}");
    }
}

#[test]
fn one_batch_launch_letterboxes_mixed_frames_and_layouts_into_their_slots() {
    let Some(lib) = kernels() else { return };
    let frames: Vec<Frame> = parity_cases().into_iter().map(|c| c.1).collect();
    let held: Vec<Planes> = frames
        .iter()
        .enumerate()
        .map(|(k, f)| planes(f, [Layout::I420, Layout::Nv12][k % 2]))
        .collect();
    let (dst_w, dst_h) = (640, 640);
    let area = 3 * (dst_w * dst_h) as usize;
    let jobs: Vec<BatchJob> = held
        .iter()
        .enumerate()
        .map(|(k, p)| p.planes.job(dst_w, dst_h, k))
        .collect();
    for precision in [Precision::F32, Precision::F16] {
        // SAFETY: every job's planes are alive in `held`.
        let out = unsafe { run_batch(lib, precision, &jobs, (dst_w, dst_h)) };
        for (k, frame) in frames.iter().enumerate() {
            let (err, within) = out.compare(k, area, &reference(frame, dst_w, dst_h, precision));
            assert!(within, "{precision:?} slot {k}: error {err}");
        }
    }
}

#[test]
fn the_workers_staging_feeds_the_batch_kernel_what_the_reference_letterboxes() {
    use kvs_infer::gpu::prep::{stage, staged_bytes};
    let Some(lib) = kernels() else { return };
    // Every parity frame twice, so planes of many sizes sit back to back.
    let frames: Vec<Frame> = parity_cases()
        .into_iter()
        .map(|c| c.1)
        .cycle()
        .take(10)
        .collect();
    let refs: Vec<&Frame> = frames.iter().collect();
    let (dst_w, dst_h) = (320, 256);
    // The staging is read where it lies: its host address stands for the device copy.
    let mut staging = vec![0u8; staged_bytes(&refs)];
    let base = staging.as_ptr() as u64;
    let jobs = stage(&refs, &mut staging, base, (dst_w, dst_h));
    assert_eq!(jobs.len(), refs.len());
    let area = 3 * (dst_w * dst_h) as usize;
    // SAFETY: the jobs point into `staging`, alive and unchanged.
    let out = unsafe { run_batch(lib, Precision::F32, &jobs, (dst_w, dst_h)) };
    for (k, frame) in frames.iter().enumerate() {
        let (err, within) = out.compare(k, area, &reference(frame, dst_w, dst_h, Precision::F32));
        assert!(within, "slot {k}: error {err}");
    }
}

#[test]
fn the_candidate_kernel_finds_exactly_the_references_candidates() {
    use kvs_infer::gpu::candidates::{bit_equal, parity_cases, reference};
    let Some(lib) = kernels() else { return };
    let run: CandidatesFn = symbol(lib, "cpu_yolo_candidates");
    for case in parity_cases() {
        let d = case.dims;
        let mut counts = vec![u32::MAX; d.batch];
        let mut found = vec![Candidate::default(); d.batch * d.anchors];
        // SAFETY: `output` is [batch, channels, anchors]; `counts` holds a word per
        // image and `found` every anchor of every image.
        unsafe {
            run(
                case.output.as_ptr(),
                d.batch as i32,
                d.channels as i32,
                case.classes as i32,
                d.anchors as i32,
                case.conf,
                counts.as_mut_ptr(),
                found.as_mut_ptr(),
            )
        };
        let want = reference(&case);
        for (b, want) in want.iter().enumerate() {
            let n = counts[b] as usize;
            let mut got = found[b * d.anchors..b * d.anchors + n].to_vec();
            got.sort_by_key(|c| c.anchor);
            assert!(
                bit_equal(&got, want),
                "{} image {b}: {got:?} vs {want:?}",
                case.name
            );
        }
    }
}
