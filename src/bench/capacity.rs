//! Capacity: the largest number of live cameras at F fps this host serves with p99
//! frame→detections latency within the budget and fewer than 1% of frames dropped.
//!
//! Live file cameras (paced at the clip's rate, sampled at F fps) are added in
//! doubling steps until a step fails, then the boundary is found by bisection. Each
//! probe is a full pipeline run. Two batch-1 runs (1 and 9 cameras) give the memory
//! cost of one more camera. The bottleneck is named from the figures: the
//! engine ceiling (raw images/s ÷ F) against the decode ceiling (cores ÷ one stream's
//! share of a core).

use serde::Serialize;

use super::pipeline::{cameras_config, BenchArgs, DecodeRow, RawRow};
use super::{measure, progress, BenchError};

/// Most frames dropped for a probe to pass.
pub const MAX_DROP_RATE: f64 = 0.01;

/// One probe of the search.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRow {
    /// Cameras.
    pub cameras: usize,
    /// Frames run per second.
    pub frames_per_s: f64,
    /// p99 frame→detections latency, ms.
    pub latency_p99_ms: f64,
    /// Frames dropped / offered.
    pub drop_rate: f64,
    /// Resident memory during the probe, MiB.
    pub rss_mib: f64,
    /// Within the budget and the drop limit.
    pub pass: bool,
}

/// The search's result.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// Frames per second per camera.
    pub fps: f64,
    /// p99 latency budget, ms.
    pub budget_ms: f64,
    /// The most cameras that passed (0: not even one).
    pub cameras: usize,
    /// Every probe, in the order run.
    pub probes: Vec<ProbeRow>,
    /// Extra resident memory per added live camera, MiB (batch-1 runs of 1 and 9).
    pub rss_per_camera_mib: f64,
    /// Cameras the raw engine could serve at F fps.
    pub engine_ceiling: f64,
    /// Cameras decoding could serve (cores ÷ one stream's share), if measured.
    pub decode_ceiling: Option<f64>,
    /// What limits capacity, in words.
    pub bottleneck: String,
}

/// Searches for the capacity at `args.capacity_fps` within `args.budget_ms`.
pub fn search(
    args: &BenchArgs,
    limit: usize,
    raw: &[RawRow],
    decode: &[DecodeRow],
) -> Result<CapacityReport, BenchError> {
    let fps = args.capacity_fps;
    let batch = args.max_batch.min(limit).max(1);
    let mut probes: Vec<ProbeRow> = Vec::new();
    let mut probe = |cameras: usize| -> Result<bool, BenchError> {
        progress(&format!("capacity, {cameras} live camera(s) at {fps} fps…"));
        let window = measure(
            &cameras_config(args, cameras, batch, Some(fps)),
            args.warmup,
            args.seconds,
        )?;
        let p99 = window.latency(0.99);
        let pass =
            window.frames_per_s > 0.0 && p99 <= args.budget_ms && window.drop_rate < MAX_DROP_RATE;
        probes.push(ProbeRow {
            cameras,
            frames_per_s: window.frames_per_s,
            latency_p99_ms: p99,
            drop_rate: window.drop_rate,
            rss_mib: window.rss_mib,
            pass,
        });
        Ok(pass)
    };
    let (mut good, mut bad) = (0usize, None);
    let mut cameras = 1;
    while cameras <= args.max_cameras {
        if probe(cameras)? {
            good = cameras;
            cameras *= 2;
        } else {
            bad = Some(cameras);
            break;
        }
    }
    if let Some(mut bad) = bad {
        while bad - good > 1 {
            let mid = (good + bad) / 2;
            if probe(mid)? {
                good = mid;
            } else {
                bad = mid;
            }
        }
    }
    let best_raw = raw.iter().map(|r| r.images_per_s).fold(0.0, f64::max);
    let engine_ceiling = best_raw / fps;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let decode_ceiling = decode
        .iter()
        .find(|d| d.height <= 720)
        .map(|d| cores / d.core_share);
    let first_fail = probes.iter().filter(|p| !p.pass).min_by_key(|p| p.cameras);
    let bottleneck = match first_fail {
        None => format!("none reached: every probe up to {} cameras passed", args.max_cameras),
        // Frames kept up but waited too long: the cameras start in phase, so a burst of
        // C frames arrives together and the last waits C / throughput.
        Some(p) if p.drop_rate < MAX_DROP_RATE && p.frames_per_s >= 0.95 * p.cameras as f64 * fps => format!(
            "latency, not throughput: at {} cameras every frame still ran ({:.1} frames/s) but p99 reached {:.0} ms; the cameras start in phase, so each second's {} frames arrive together and the last waits for the whole burst ({:.1} s at {best_raw:.0} images/s). Cameras out of phase spread the load toward the engine's ceiling of about {engine_ceiling:.0}",
            p.cameras,
            p.frames_per_s,
            p.latency_p99_ms,
            p.cameras,
            p.cameras as f64 / best_raw
        ),
        Some(p) => match decode_ceiling {
            Some(d) if d < engine_ceiling => format!(
                "decoding: at {} cameras frames were dropped; every frame of a stream is decoded whatever fps_target keeps, so {cores:.0} cores decode about {d:.0} streams, fewer than the {engine_ceiling:.0} the engine could infer at {fps} fps",
                p.cameras
            ),
            _ => format!(
                "the engine: at {} cameras {:.1} frames/s ran of {:.0} offered; it infers about {best_raw:.0} images/s, about {engine_ceiling:.0} cameras at {fps} fps, less the CPU that decoding and preprocessing take from it",
                p.cameras,
                p.frames_per_s,
                p.cameras as f64 * fps
            ),
        },
    };
    let rss_per_camera_mib = rss_per_camera(args)?;
    Ok(CapacityReport {
        fps,
        budget_ms: args.budget_ms,
        cameras: good,
        probes,
        rss_per_camera_mib,
        engine_ceiling,
        decode_ceiling,
        bottleneck,
    })
}

/// Cameras added for the memory figure.
const RSS_EXTRA_CAMERAS: usize = 8;

/// Extra resident memory per added live camera: 1 camera, then 1 + 8, both with
/// batch-1 scheduling so the engines' arenas are the same size in both runs (larger
/// batches grow them, which is not the cameras' cost). The second run reuses what the
/// first freed, so the difference is what the extra cameras hold: decoders, frames in
/// flight, threads.
fn rss_per_camera(args: &BenchArgs) -> Result<f64, BenchError> {
    progress("memory per camera (1 and 9 live cameras, batch 1)…");
    let fps = args.capacity_fps;
    let short = (args.warmup.min(2.0), args.seconds.min(3.0));
    let one = measure(&cameras_config(args, 1, 1, Some(fps)), short.0, short.1)?;
    let more = measure(
        &cameras_config(args, 1 + RSS_EXTRA_CAMERAS, 1, Some(fps)),
        short.0,
        short.1,
    )?;
    Ok((more.rss_mib - one.rss_mib) / RSS_EXTRA_CAMERAS as f64)
}

/// The search as a human table.
pub fn table(c: &CapacityReport) -> String {
    let mut out = format!(
        "\ncapacity at {} fps per camera, p99 ≤ {:.0} ms, drops < {:.0}%\n  cameras  frames/s  p99 ms  dropped  RSS MiB  pass\n",
        c.fps,
        c.budget_ms,
        MAX_DROP_RATE * 100.0
    );
    for p in &c.probes {
        out.push_str(&format!(
            "  {:>7}  {:>8.1}  {:>6.0}  {:>6.1}%  {:>7.0}  {}\n",
            p.cameras,
            p.frames_per_s,
            p.latency_p99_ms,
            p.drop_rate * 100.0,
            p.rss_mib,
            if p.pass { "yes" } else { "no" }
        ));
    }
    out.push_str(&format!(
        "  => {} camera(s); RSS per added camera {:.1} MiB; bottleneck: {}\n",
        c.cameras, c.rss_per_camera_mib, c.bottleneck
    ));
    out
}
