//! Ingest and decoding on real streams made with ffmpeg: MP4, MKV and MPEG-TS
//! containers, H.264 and H.265, looping with increasing pts, real-time pacing, and
//! `fps_target` selection.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{fixture, repo, skip};
use kvs_infer::decode::ffmpeg::FfmpegDecoder;
use kvs_infer::decode::{Decoder, Frame, FrameSelector};
use kvs_infer::ingest::file::FileSource;
use kvs_infer::ingest::{Codec, FrameSource};

/// Makes `name` under tests/fixtures-generated/ with ffmpeg (once); skips loudly
/// without ffmpeg.
fn generated(name: &str, args: &[&str]) -> Option<PathBuf> {
    let dir = repo().join("tests/fixtures-generated");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if path.is_file() {
        return Some(path);
    }
    let thread = format!("{:?}", std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let part = dir.join(format!("part-{}-{thread}-{name}", std::process::id()));
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .arg(&part)
        .status();
    match status {
        Ok(s) if s.success() => {
            std::fs::rename(&part, &path).unwrap();
            Some(path)
        }
        Ok(s) => panic!("ffmpeg failed ({s}) making {name}"),
        Err(e) => {
            skip(&format!("ffmpeg not runnable ({e}); run scripts/setup.sh"));
            None
        }
    }
}

/// A 1 s, 10 fps, 160×120 H.264 clip without B-frames.
fn short_clip() -> Option<PathBuf> {
    generated(
        "short-1s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=10:duration=1",
            "-c:v",
            "libx264",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
        ],
    )
}

/// Every selected frame of `path` (at most `limit` access units), with its codec.
fn decode_all(path: &Path, fps_target: f64, looped: bool, limit: usize) -> (Codec, Vec<Frame>) {
    let mut source = FileSource::open(path, looped, false).unwrap();
    let codec = source.info().codec;
    let mut decoder = FfmpegDecoder::new(source.info(), FrameSelector::new(fps_target), 1).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut frames = Vec::new();
    for _ in 0..limit {
        match runtime.block_on(source.next_access_unit()).unwrap() {
            Some(unit) => frames.extend(decoder.decode(&unit).unwrap()),
            None => {
                frames.extend(decoder.flush().unwrap());
                break;
            }
        }
    }
    (codec, frames)
}

#[test]
fn mkv_and_mpegts_remuxes_decode_like_the_mp4() {
    let Some(clip) = fixture("video/person-motorcycle-720p.mp4") else {
        return;
    };
    let clip = clip.display().to_string();
    let (_, mp4) = decode_all(Path::new(&clip), 25.0, false, 1000);
    assert_eq!(mp4.len(), 250, "10 s at 25 fps");
    for (name, format) in [("clip.mkv", "matroska"), ("clip.ts", "mpegts")] {
        let Some(path) = generated(name, &["-i", &clip, "-c", "copy", "-f", format]) else {
            return;
        };
        let (codec, frames) = decode_all(&path, 25.0, false, 1000);
        assert_eq!(codec, Codec::H264);
        assert_eq!(frames.len(), 250, "{name}");
        assert_eq!((frames[0].width, frames[0].height), (1280, 720));
        // Same pictures: the luma planes of a frame in the middle match exactly.
        assert_eq!(frames[100].planes()[0], mp4[100].planes()[0], "{name}");
    }
}

#[test]
fn h265_streams_decode() {
    let Some(path) = generated(
        "hevc-320x240.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=2",
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
            "-pix_fmt",
            "yuv420p",
        ],
    ) else {
        return;
    };
    let (codec, frames) = decode_all(&path, 25.0, false, 1000);
    assert_eq!(codec, Codec::H265);
    assert_eq!(frames.len(), 50);
    assert_eq!((frames[0].width, frames[0].height), (320, 240));
    assert!(frames.windows(2).all(|w| w[1].pts_90k > w[0].pts_90k));
}

#[test]
fn fps_target_keeps_evenly_spaced_frames() {
    let Some(clip) = fixture("video/person-motorcycle-720p.mp4") else {
        return;
    };
    let (_, frames) = decode_all(&clip, 5.0, false, 1000);
    assert_eq!(frames.len(), 50, "5 of every 25 frames over 10 s");
    assert!(frames
        .windows(2)
        .all(|w| w[1].pts_90k - w[0].pts_90k == 18_000));
}

#[test]
fn looping_restarts_at_the_end_with_pts_still_increasing() {
    let Some(path) = short_clip() else {
        return;
    };
    let (_, frames) = decode_all(&path, 10.0, true, 25);
    assert_eq!(frames.len(), 25, "two and a half loops of a 10-frame clip");
    for w in frames.windows(2) {
        assert_eq!(
            w[1].pts_90k - w[0].pts_90k,
            9000,
            "even steps across the loop seam"
        );
    }
}

#[test]
fn realtime_sources_are_paced_at_the_clips_rate() {
    let Some(path) = short_clip() else {
        return;
    };
    let mut source = FileSource::open(&path, false, true).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let start = Instant::now();
    let mut units = 0;
    while runtime
        .block_on(source.next_access_unit())
        .unwrap()
        .is_some()
    {
        units += 1;
    }
    assert_eq!(units, 10);
    // Ten frames at 10 fps span 0.9 s of pts: reading cannot be faster than that.
    assert!(
        start.elapsed() >= Duration::from_millis(850),
        "{:?}",
        start.elapsed()
    );
}
