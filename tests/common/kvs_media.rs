//! The fake KVS's media: the fixture clip looped to 60 s, with an AAC audio track beside
//! the video as cameras with microphones send, cut by ffmpeg into 2 s pieces for each
//! delivery path (HLS MPEG-TS and fMP4 segments, and MKV files reshaped into the
//! fragments GetMedia streams, with KVS's tags). A live stream never runs out: its
//! fragment `i` is piece `i % len` with timestamps moved to where its [`Producer`]'s
//! timeline has got to ([`rewrite`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "kvs_rewrite.rs"]
mod rewrite;

/// Seconds of video per segment and per fragment.
pub const PIECE_MS: i64 = 2000;
/// Producer time of the first frame: 2026-11-24T06:00:00Z.
pub const BASE_EPOCH_MS: i64 = 1_795_500_000_000;
/// Fragment numbers are this plus the fragment's index.
const FRAGMENT_BASE: u128 = 91_343_852_333_181_432_392_682_062_600_000_000_000;

/// The clip cut for each delivery path.
pub struct Media {
    pub(super) ts: Vec<Vec<u8>>,
    pub(super) fmp4_init: Vec<u8>,
    pub(super) fmp4: Vec<Vec<u8>>,
    fmp4_timescales: HashMap<u32, u32>,
    mkv: Vec<Vec<u8>>,
}

impl Media {
    /// Cuts `clip` (cached under `target/fake-kvs/`); `None` when ffmpeg fails.
    pub fn prepare(clip: &Path) -> Option<Media> {
        // Tests run in parallel threads: one cuts, the others wait and read its cut.
        static CUTTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _cutting = CUTTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let stem = clip.file_stem()?.to_str()?.to_owned();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/fake-kvs-v2")
            .join(&stem);
        let done = dir.join("done");
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&dir);
            for sub in ["ts", "fmp4", "mkv"] {
                std::fs::create_dir_all(dir.join(sub)).ok()?;
            }
            let long = dir.join("long.mp4");
            let hls = |kind: &str, extra: &[&str]| {
                let mut after = vec!["-c", "copy", "-f", "hls", "-hls_time", "2"];
                after.extend(["-hls_list_size", "0", "-hls_segment_type", kind]);
                after.extend_from_slice(extra);
                let ext = if kind == "mpegts" { "ts" } else { "m4s" };
                let dir = dir.join(if kind == "mpegts" { "ts" } else { "fmp4" });
                let pattern = dir.join(format!("seg%03d.{ext}")).display().to_string();
                after.extend(["-hls_segment_filename", &pattern]);
                args(&["-i"], &long, &after, &dir.join("index.m3u8"))
            };
            let steps: [Vec<String>; 4] = [
                args(
                    &["-stream_loop", "5", "-i"],
                    clip,
                    &[
                        "-f",
                        "lavfi",
                        "-i",
                        "sine=frequency=440:sample_rate=48000",
                        "-map",
                        "0:v",
                        "-map",
                        "1:a",
                        "-c:v",
                        "copy",
                        "-c:a",
                        "aac",
                        "-shortest",
                    ],
                    &long,
                ),
                hls("mpegts", &[]),
                hls("fmp4", &["-hls_fmp4_init_filename", "init.mp4"]),
                args(
                    &["-i"],
                    &long,
                    &[
                        "-c",
                        "copy",
                        "-f",
                        "segment",
                        "-segment_time",
                        "2",
                        "-segment_format",
                        "matroska",
                    ],
                    &dir.join("mkv/frag%03d.mkv"),
                ),
            ];
            for step in steps {
                let ok = Command::new("ffmpeg")
                    .args(["-loglevel", "error", "-y"])
                    .args(&step)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    eprintln!("ffmpeg failed: {step:?}");
                    return None;
                }
            }
            std::fs::write(&done, b"").ok()?;
        }
        let read_all = |sub: &str, ext: &str| -> Vec<Vec<u8>> {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.retain(|p| {
                p.extension().is_some_and(|e| e == ext)
                    && p.file_name().is_some_and(|n| n != "init.mp4")
            });
            files.sort();
            files.iter().map(|p| std::fs::read(p).unwrap()).collect()
        };
        let mkv = read_all("mkv", "mkv");
        if mkv
            .iter()
            .any(|f| rewrite::kvs_fragment(f, 0, None, None, false).is_none())
        {
            eprintln!("ffmpeg's Matroska pieces are not as expected");
            return None;
        }
        let fmp4_init = std::fs::read(dir.join("fmp4/init.mp4")).ok()?;
        Some(Media {
            ts: read_all("ts", "ts"),
            fmp4_timescales: rewrite::fmp4_timescales(&fmp4_init),
            fmp4_init,
            fmp4: read_all("fmp4", "m4s"),
            mkv,
        })
    }

    /// Pieces of the clip in each path (they are cut alike).
    pub fn len(&self) -> usize {
        self.ts.len().min(self.fmp4.len()).min(self.mkv.len())
    }
}

fn args(before: &[&str], input: &Path, after: &[&str], output: &Path) -> Vec<String> {
    before
        .iter()
        .map(|s| s.to_string())
        .chain([input.display().to_string()])
        .chain(after.iter().map(|s| s.to_string()))
        .chain([output.display().to_string()])
        .collect()
}

pub(super) fn fragment_number(index: usize) -> String {
    (FRAGMENT_BASE + index as u128).to_string()
}

pub(super) fn fragment_index(number: &str) -> Option<usize> {
    let n: u128 = number.parse().ok()?;
    n.checked_sub(FRAGMENT_BASE).map(|i| i as usize)
}

/// How a stream's producer behaves on the live clock. Fragment `i` (from 0, without
/// end) carries the clip's piece `i % len`, with its timestamps moved to where this
/// producer's timeline has got to.
#[derive(Debug, Clone, Default)]
pub struct Producer {
    /// From this fragment on, the container's timecodes start again at 0 (a camera or
    /// producer SDK restart); the producer timestamps go on.
    pub restart_at: Option<usize>,
    /// This fragment repeats the previous one's timecodes (and later ones follow on
    /// from there).
    pub repeat_at: Option<usize>,
    /// After this fragment, nothing is uploaded for this many ms (a sparse stream).
    pub gap_after: Option<(usize, i64)>,
    /// GetMedia fragments carry no KVS tags (no fragment number, producer timestamp or
    /// continuation token).
    pub untagged: bool,
    /// From this fragment on, GetMedia's video holds no picture a decoder can use (the
    /// container stays well-formed).
    pub undecodable_from: Option<usize>,
    /// How long the stream had been recording when the fake started, ms: an archive
    /// to read on demand.
    pub history_ms: i64,
}

impl Producer {
    /// Where fragment `i` starts on the producer's timeline, ms after its first.
    fn timeline_ms(&self, i: usize) -> i64 {
        let gap = match self.gap_after {
            Some((after, ms)) if i > after => ms,
            _ => 0,
        };
        i as i64 * PIECE_MS + gap
    }

    /// When fragment `i` starts on the live clock, ms after the fake started (negative
    /// for history).
    pub fn live_ms(&self, i: usize) -> i64 {
        self.timeline_ms(i) - self.history_ms
    }

    /// The producer timestamp of fragment `i`, epoch ms.
    pub fn producer_ms(&self, i: usize) -> i64 {
        BASE_EPOCH_MS + self.timeline_ms(i)
    }

    /// The container timecode, ms, fragment `i` starts at.
    pub fn timecode_ms(&self, i: usize) -> i64 {
        let mut tc = match self.restart_at {
            Some(r) if i >= r => self.timeline_ms(i) - self.timeline_ms(r),
            _ => self.timeline_ms(i),
        };
        if self.repeat_at.is_some_and(|p| i >= p) {
            tc -= PIECE_MS;
        }
        tc.max(0)
    }

    /// Fragments complete `elapsed_ms` after the fake started: fragment i is recorded
    /// from its live start and complete one piece later.
    pub fn available(&self, elapsed_ms: i64) -> usize {
        let mut n = ((elapsed_ms + self.history_ms) / PIECE_MS).max(0) as usize;
        while n > 0 && self.live_ms(n - 1) + PIECE_MS > elapsed_ms {
            n -= 1;
        }
        n
    }

    /// The first fragment whose producer time is at or after `epoch_ms`.
    pub fn at_or_after(&self, epoch_ms: i64) -> usize {
        let mut i = ((epoch_ms - BASE_EPOCH_MS).max(0) / PIECE_MS) as usize;
        while i > 0 && self.producer_ms(i - 1) >= epoch_ms {
            i -= 1;
        }
        while self.producer_ms(i) < epoch_ms {
            i += 1;
        }
        i
    }
}

impl Media {
    /// The clip's piece that fragment `i` carries.
    fn source(&self, i: usize) -> usize {
        i % self.len()
    }

    /// How far fragment `i`'s timestamps move from its piece's own, ms.
    fn delta_ms(&self, producer: &Producer, i: usize) -> i64 {
        producer.timecode_ms(i) - self.source(i) as i64 * PIECE_MS
    }

    /// HLS MPEG-TS segment `i`.
    pub fn ts_segment(&self, producer: &Producer, i: usize) -> Vec<u8> {
        rewrite::shift_ts(&self.ts[self.source(i)], self.delta_ms(producer, i) * 90)
    }

    /// HLS fMP4 media segment `i`.
    pub fn fmp4_segment(&self, producer: &Producer, i: usize) -> Vec<u8> {
        let delta = self.delta_ms(producer, i);
        rewrite::shift_fmp4(&self.fmp4[self.source(i)], delta, &self.fmp4_timescales)
    }

    /// GetMedia fragment `i` as KVS sends it: tags before its first Cluster (fragment
    /// number, server and producer timestamps) and after it (continuation token).
    pub fn mkv_fragment(&self, producer: &Producer, i: usize) -> Vec<u8> {
        let at = producer.producer_ms(i);
        let epoch = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
        let (head, tail) = if producer.untagged {
            (None, None)
        } else {
            (
                Some(rewrite::tags(&[
                    ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", fragment_number(i)),
                    ("AWS_KINESISVIDEO_SERVER_TIMESTAMP", epoch(at + 40)),
                    ("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", epoch(at)),
                ])),
                Some(rewrite::tags(&[
                    ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", "0".to_owned()),
                    ("AWS_KINESISVIDEO_CONTINUATION_TOKEN", fragment_number(i)),
                ])),
            )
        };
        let file = &self.mkv[self.source(i)];
        let undecodable = producer.undecodable_from.is_some_and(|from| i >= from);
        rewrite::kvs_fragment(file, self.delta_ms(producer, i), head, tail, undecodable)
            .expect("the pieces were checked when the media was prepared")
    }
}

#[test]
fn a_producer_restart_starts_timecodes_again_and_a_gap_delays_everything_after_it() {
    let p = Producer {
        restart_at: Some(3),
        gap_after: Some((4, 5000)),
        ..Producer::default()
    };
    let tc: Vec<i64> = (0..7).map(|i| p.timecode_ms(i)).collect();
    assert_eq!(tc, [0, 2000, 4000, 0, 2000, 9000, 11_000]);
    assert_eq!(p.producer_ms(5), BASE_EPOCH_MS + 15_000);
    // Fragment 4 is complete at 10 s; fragment 5 only at 17 s.
    assert_eq!(p.available(16_999), 5);
    assert_eq!(p.available(17_000), 6);
    assert_eq!(p.at_or_after(BASE_EPOCH_MS + 10_001), 5);
    let r = Producer {
        repeat_at: Some(2),
        ..Producer::default()
    };
    assert_eq!(r.timecode_ms(1), r.timecode_ms(2));
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(super) fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[test]
fn rfc3339_formats_the_base_time() {
    assert_eq!(rfc3339(BASE_EPOCH_MS), "2026-11-24T06:00:00.000Z");
    assert_eq!(rfc3339(BASE_EPOCH_MS + 2_500), "2026-11-24T06:00:02.500Z");
}
