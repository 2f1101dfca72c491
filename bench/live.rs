//! Live-ingest benchmarks (`cargo bench --bench live`, or `bench/live.sh`):
//!
//! 1. Glass-to-event latency, HLS versus GetMedia, through the real binary and the
//!    fake KVS of the tests (`tests/common/fake_kvs.rs`), which records a 2-second
//!    fragment in real time and serves it as KVS does: GetMedia streams a fragment
//!    while it is recorded, HLS lists a segment once it is complete. Latency is an
//!    event's `detected_at_ms` minus the wall time its frame was recorded; "first
//!    event" is from server start.
//! 2. CPU per 1080p30 stream for our demuxers and for demux + libavcodec decode (one
//!    thread, every frame decoded, 5 fps copied out), per container.
//!
//! Prints markdown tables. Environment: `LIVE_BENCH_SEC` (default 40) for part 1.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/common/fake_kvs.rs"]
mod fake_kvs;

use std::path::Path;
use std::time::{Duration, Instant};

use kvs_infer::decode::ffmpeg::FfmpegDecoder;
use kvs_infer::decode::{Decoder, FrameSelector};
use kvs_infer::ingest::demux::{mkv::MkvDemuxer, mp4::Mp4Demuxer, ts::TsDemuxer, Demuxer};
use kvs_infer::ingest::AccessUnit;

fn main() {
    // `cargo bench` passes --bench; anything else (a stray `cargo test`) does nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (Some(model), Some(clip720), Some(clip1080)) = (
        common::fixture("models/yolov8n-coco.onnx"),
        common::fixture("video/person-motorcycle-720p.mp4"),
        common::fixture("video/person-motorcycle-1080p30.mp4"),
    ) else {
        eprintln!("fixtures missing: run scripts/fetch-assets.sh");
        std::process::exit(1);
    };
    let seconds: u64 = std::env::var("LIVE_BENCH_SEC")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    latency(&model, &clip720, seconds);
    cpu_per_stream(&clip1080);
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn latency(model: &Path, clip: &Path, seconds: u64) {
    let media = fake_kvs::Media::prepare(clip).expect("ffmpeg cuts the clip");
    let fake = fake_kvs::FakeKvs::start(media, &["hls-fmp4", "hls-ts", "getmedia"]);
    let dir = common::temp_dir("live-bench");
    let mut text = format!(
        "[engine]\nbackend = \"cpu\"\n[publishers.local]\ndir = {:?}\n",
        dir.join("out").display().to_string()
    );
    for (id, extra) in [
        ("hls_fmp4", ""),
        ("hls_ts", "container = \"mpegts\"\n"),
        ("getmedia", "mode = \"getmedia\"\n"),
    ] {
        let stream = id.replace('_', "-");
        text.push_str(&format!(
            "[cameras.{id}]\nfps_target = 5\n[cameras.{id}.kvs]\nstream_name = \"{stream}\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\nretry_delay_sec = 0.2\n{extra}[[cameras.{id}.detectors]]\ntype = \"yolo\"\nparams = {{ model_path = {:?}, classes = [\"person\"], conf_threshold = 0.5, cooldown_sec = 0 }}\n",
            fake.url(),
            model.display().to_string()
        ));
    }
    let config = dir.join("config.toml");
    std::fs::write(&config, text).unwrap();
    let started_ms = kvs_infer::ingest::now_epoch_ms();
    let mut server = common::Server::start_with_env(
        &["--config", config.to_str().unwrap()],
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", "bench"),
            ("AWS_SECRET_ACCESS_KEY", "bench"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    std::thread::sleep(Duration::from_secs(seconds));
    server.signal(libc::SIGTERM);
    server.wait_exit(Duration::from_secs(60));
    let events = common::read_events(&dir.join("out"));
    println!(
        "\n### Glass-to-event latency, {seconds} s live, 3 cameras at 5 fps, YOLOv8n on CPU\n"
    );
    println!("| camera | events | first event after start (ms) | p50 (ms) | p90 (ms) | p99 (ms) |");
    println!("|---|---|---|---|---|---|");
    for id in ["hls_fmp4", "hls_ts", "getmedia"] {
        let mine: Vec<_> = events.iter().filter(|e| e["camera_id"] == id).collect();
        let mut lat: Vec<i64> = mine
            .iter()
            .map(|e| {
                e["detected_at_ms"].as_i64().unwrap() - fake.glass_ms(e["ts_ms"].as_i64().unwrap())
            })
            .collect();
        let first = mine
            .iter()
            .map(|e| e["detected_at_ms"].as_i64().unwrap())
            .min()
            .map_or(-1, |t| t - started_ms);
        lat.sort_unstable();
        println!(
            "| {id} | {} | {first} | {} | {} | {} |",
            lat.len(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.9),
            percentile(&lat, 0.99)
        );
    }
}

/// CPU time of this thread, in milliseconds.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

fn cpu_per_stream(clip: &Path) {
    let dir = common::repo().join("target/live-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rows = Vec::new();
    for (name, args) in [
        ("MPEG-TS", vec!["-f", "mpegts"]),
        (
            "fMP4",
            vec![
                "-movflags",
                "+frag_keyframe+empty_moov+default_base_moof",
                "-f",
                "mp4",
            ],
        ),
        ("MKV", vec!["-live", "1", "-f", "matroska"]),
    ] {
        let out = dir.join(format!("1080p30.{}", name.to_lowercase()));
        if !out.exists() {
            let ok = std::process::Command::new("ffmpeg")
                .args(["-loglevel", "error", "-y", "-i"])
                .arg(clip)
                .args(["-c", "copy"])
                .args(&args)
                .arg(&out)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ffmpeg could not remux {name}");
        }
        let bytes = std::fs::read(&out).unwrap();
        let make = || -> Box<dyn Demuxer> {
            match name {
                "MPEG-TS" => Box::new(TsDemuxer::new()),
                "fMP4" => Box::new(Mp4Demuxer::new()),
                _ => Box::new(MkvDemuxer::new()),
            }
        };
        // Demux only, in 64 KiB network-sized chunks, best of 3.
        let mut demux_ms = f64::MAX;
        let mut frames = 0;
        let mut span_90k = 0;
        for _ in 0..3 {
            let t = thread_cpu_ms();
            let mut d = make();
            let mut n = 0;
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            for chunk in bytes.chunks(64 << 10) {
                d.push(chunk).unwrap();
                while let Some(s) = d.next_sample() {
                    n += 1;
                    lo = lo.min(s.pts_90k);
                    hi = hi.max(s.pts_90k);
                }
            }
            let _ = d.end_of_segment();
            n += std::iter::from_fn(|| d.next_sample()).count();
            demux_ms = demux_ms.min(thread_cpu_ms() - t);
            frames = n;
            span_90k = hi - lo + 3000;
        }
        // Demux + decode (every frame decoded, 5 fps copied out), one thread.
        let t = thread_cpu_ms();
        let mut d = make();
        let mut decoder = None;
        let mut kept = 0;
        for chunk in bytes.chunks(64 << 10) {
            d.push(chunk).unwrap();
            while let Some(s) = d.next_sample() {
                let dec = decoder.get_or_insert_with(|| {
                    FfmpegDecoder::new(d.info().unwrap(), FrameSelector::new(5.0), 1).unwrap()
                });
                let unit = AccessUnit {
                    data: s.data,
                    pts_90k: s.pts_90k,
                    keyframe: s.keyframe,
                    received_at: Instant::now(),
                    wall_ms: 0,
                };
                kept += dec.decode(&unit).unwrap().len();
            }
        }
        if let Some(dec) = decoder.as_mut() {
            kept += dec.flush().unwrap().len();
        }
        let total_ms = thread_cpu_ms() - t;
        let video_s = span_90k as f64 / 90_000.0;
        rows.push(format!(
            "| {name} | {frames} | {:.1} | {:.2} | {:.3} | {:.1} | {:.1}% | {:.0} |",
            video_s,
            demux_ms / frames as f64,
            demux_ms / video_s / 10.0,
            total_ms / frames as f64,
            total_ms / video_s / 10.0,
            1000.0 * video_s / total_ms,
        ));
        assert!(kept > 0);
    }
    println!("\n### CPU per 1080p30 stream: our demuxers, and demux + decode (1 thread)\n");
    println!("| container | frames | video (s) | demux ms/frame | demux % of a core | demux+decode ms/frame | demux+decode % of a core | streams per core |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
