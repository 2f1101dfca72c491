//! The NVDEC section: each prepared clip decoded on the GPU and compared picture by
//! picture with libavcodec's decode (hashes made by `--hash-frames` at prepare time),
//! the NV12 surface letterboxed by our kernel where it lies (no host copy) and compared
//! with the CPU reference, and decoding throughput with 1 and 8 sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvs_infer::decode::Frame;
use kvs_infer::gpu::batch::letterbox_batch;
use kvs_infer::gpu::devframe::FramePool;
use kvs_infer::gpu::driver::Context;
use kvs_infer::gpu::letterbox::{max_abs_diff, reference, GpuLetterbox, Precision, SlotData};
use kvs_infer::gpu::nvdec::NvDecoder;
use kvs_infer::gpu::prep::GpuPrep;
use kvs_infer::ingest::demux::mp4::Mp4Demuxer;
use kvs_infer::ingest::demux::{Demuxer, Sample};
use kvs_infer::ingest::StreamInfo;

/// Sessions decoding at once for the aggregate figure.
const SESSIONS: usize = 8;

/// A frame's identity: FNV-1a over its three planes (what `--hash-frames` writes).
pub fn frame_hash(planes: [&[u8]; 3]) -> u64 {
    kvs_infer::hash::fnv1a(&planes)
}

/// The clip's stream and its samples.
pub fn demux(path: &Path) -> Result<(StreamInfo, Vec<Sample>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut d = Mp4Demuxer::new();
    d.push(&bytes).map_err(|e| e.to_string())?;
    d.end_of_segment().map_err(|e| e.to_string())?;
    let info = d.info().cloned().ok_or("no video track")?;
    let samples = std::iter::from_fn(|| d.next_sample()).collect();
    Ok((info, samples))
}

struct Quality {
    frames: usize,
    exact: usize,
    frame0_diff: u8,
    kernel_error: f32,
    /// The server's path: kept in device memory (`Mapped::keep`), letterboxed by the
    /// engine worker's preprocessing, and its lazily made host planes.
    kept_error: f32,
    kept_planes_equal: bool,
}

fn quality(
    gpu: Option<&GpuLetterbox>,
    kernels: &Path,
    info: &StreamInfo,
    samples: &[Sample],
    clip: &Path,
) -> Result<Quality, String> {
    let refs: Vec<u64> = std::fs::read_to_string(clip.with_extension("ref"))
        .map_err(|e| format!("no reference hashes (run --prepare): {e}"))?
        .lines()
        .filter_map(|l| u64::from_str_radix(l.trim(), 16).ok())
        .collect();
    let frame0 = std::fs::read(clip.with_extension("frame0.yuv")).unwrap_or_default();
    let ctx = Arc::new(Context::new(0).map_err(|e| e.to_string())?);
    let mut dec = NvDecoder::new(ctx.clone(), info, 4).map_err(|e| e.to_string())?;
    let mut q = Quality {
        frames: 0,
        exact: 0,
        frame0_diff: 0,
        kernel_error: 0.0,
        kept_error: 0.0,
        kept_planes_equal: true,
    };
    let pool = FramePool::new(ctx.clone(), 4).map_err(|e| e.to_string())?;
    // Without the kernels (they failed to load), decoding is still checked.
    let mut prep = match gpu {
        Some(_) => Some(GpuPrep::new(0, 640, 640, kernels)?),
        None => None,
    };
    let (dst_w, dst_h) = (640u32, 640u32);
    let out = ctx
        .alloc::<f32>(3 * (dst_w * dst_h) as usize)
        .map_err(|e| e.to_string())?;
    let mut step = |dec: &mut NvDecoder| -> Result<(), String> {
        while let Some(m) = dec.next_picture().map_err(|e| e.to_string())? {
            let frame: Frame = m.download(Instant::now(), 0).map_err(|e| e.to_string())?;
            let [y, u, v] = frame.planes();
            if refs.get(q.frames) == Some(&frame_hash([y, u, v])) {
                q.exact += 1;
            }
            if q.frames == 0 && !frame0.is_empty() {
                let ours = [y.as_slice(), u, v].concat();
                q.frame0_diff = if ours.len() == frame0.len() {
                    ours.iter()
                        .zip(&frame0)
                        .map(|(a, b)| a.abs_diff(*b))
                        .max()
                        .unwrap_or(0)
                } else {
                    u8::MAX
                };
            }
            if let (true, Some(gpu), Some(prep)) = (q.frames < 5, gpu, prep.as_mut()) {
                // The surface straight into the kernel: pitched NV12 in device memory.
                let planes = m.planes();
                letterbox_batch(
                    gpu,
                    &[planes],
                    dst_w,
                    dst_h,
                    Precision::F32,
                    out.device_ptr(),
                )
                .map_err(|e| e.to_string())?;
                let got = out.download().map_err(|e| e.to_string())?;
                let SlotData::F32(want) = reference(&frame, dst_w, dst_h, Precision::F32) else {
                    unreachable!("asked for f32");
                };
                q.kernel_error = q.kernel_error.max(max_abs_diff(&got, &want));
                let kept = m
                    .keep(&pool, Instant::now(), 0)
                    .map_err(|e| e.to_string())?;
                prep.prepare(&[&kept]).map_err(|e| e.to_string())?;
                let got = prep.download(1).map_err(|e| e.to_string())?;
                q.kept_error = q.kept_error.max(max_abs_diff(&got, &want));
                q.kept_planes_equal &= kept.planes() == frame.planes();
            }
            q.frames += 1;
        }
        Ok(())
    };
    for s in samples {
        dec.push(&s.data, s.keyframe, s.pts_90k)
            .map_err(|e| e.to_string())?;
        step(&mut dec)?;
    }
    dec.finish().map_err(|e| e.to_string())?;
    step(&mut dec)?;
    if refs.len() != q.frames {
        return Err(format!(
            "{} pictures decoded, libavcodec made {}",
            q.frames,
            refs.len()
        ));
    }
    Ok(q)
}

/// Pictures per second one session decodes (mapped and released, never copied), over
/// about `seconds`, looping the clip.
fn throughput(info: &StreamInfo, samples: &[Sample], seconds: f64) -> Result<f64, String> {
    let ctx = Arc::new(Context::new(0).map_err(|e| e.to_string())?);
    let mut dec = NvDecoder::new(ctx, info, 4).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut pictures = 0usize;
    let mut offset = 0i64;
    let span = samples.last().map_or(0, |s| s.pts_90k) + 3000;
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        for s in samples {
            dec.push(&s.data, s.keyframe, s.pts_90k + offset)
                .map_err(|e| e.to_string())?;
            while dec.next_picture().map_err(|e| e.to_string())?.is_some() {
                pictures += 1;
            }
        }
        offset += span;
    }
    dec.finish().map_err(|e| e.to_string())?;
    while dec.next_picture().map_err(|e| e.to_string())?.is_some() {
        pictures += 1;
    }
    Ok(pictures as f64 / started.elapsed().as_secs_f64())
}

/// The clips `--prepare` left in `dir`.
pub fn clips(dir: &Path) -> Vec<PathBuf> {
    let mut clips: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    clips.retain(|p| p.extension().is_some_and(|e| e == "mp4"));
    clips.sort();
    clips
}

/// Prints the NVDEC table; false when a check failed.
pub fn section(gpu: Option<&GpuLetterbox>, dir: &Path, kernels: &Path) -> bool {
    println!("\n## NVDEC\n");
    if let Err(e) = kvs_infer::gpu::nvdec::api() {
        println!("skipped: {e}");
        return true;
    }
    let clips = clips(dir);
    if clips.is_empty() {
        println!(
            "skipped: no clips in {} (bench/gpu-check.sh --prepare)",
            dir.display()
        );
        return true;
    }
    println!("Bit-exact: pictures whose hash equals libavcodec's. Mapped → kernel: the pitched NV12 surface → 640×640 fp32, max error vs the CPU reference. Kept → prep: the server's path (copied into the camera's device pool, letterboxed by the engine worker's preprocessing), max error, and whether its host planes (made on demand) equal the download. First 5 pictures. Throughput: decode only, pictures/s.\n");
    println!("| clip | codec | size | pictures | bit-exact | frame 0 max diff | mapped → kernel | kept → prep | kept host planes | 1 session fps | {SESSIONS} sessions fps | 30 fps streams | result |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for clip in clips {
        let name = clip
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let row = (|| -> Result<String, String> {
            let (info, samples) = demux(&clip)?;
            let q = quality(gpu, kernels, &info, &samples, &clip)?;
            let one = throughput(&info, &samples, 1.5 * super::rate_seconds())?;
            let threads: Vec<_> = (0..SESSIONS)
                .map(|_| {
                    let (info, samples) = (info.clone(), samples.clone());
                    std::thread::spawn(move || {
                        throughput(&info, &samples, 2.0 * super::rate_seconds())
                    })
                })
                .collect();
            let mut total = 0.0;
            for t in threads {
                total += t
                    .join()
                    .map_err(|_| "a decoding thread panicked".to_string())??;
            }
            let pass = q.exact == q.frames
                && q.kernel_error <= 1e-4
                && q.kept_error <= 1e-4
                && q.kept_planes_equal;
            ok &= pass;
            Ok(format!(
                "| {name} | {:?} | {}x{} | {} | {} | {} | {:.1e} | {:.1e} | {} | {one:.0} | {total:.0} | {:.0} | {} |",
                info.codec,
                info.width,
                info.height,
                q.frames,
                q.exact,
                q.frame0_diff,
                q.kernel_error,
                q.kept_error,
                if q.kept_planes_equal { "equal" } else { "DIFFER" },
                total / 30.0,
                if pass { "pass" } else { "FAIL" }
            ))
        })();
        match row {
            Ok(r) => println!("{r}"),
            Err(e) => {
                ok = false;
                println!("| {name} | | | | | | | | | | | | FAIL: {e} |");
            }
        }
    }
    ok
}
