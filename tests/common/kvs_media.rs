//! The fake KVS's media: the fixture clip looped to 60 s and cut by ffmpeg into 2 s
//! pieces for each delivery path (HLS MPEG-TS and fMP4 segments, and MKV files
//! reshaped into the fragments GetMedia streams, with KVS's tags).

use std::path::{Path, PathBuf};
use std::process::Command;

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
    pub(super) mkv: Vec<Vec<u8>>,
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
            .join("target/fake-kvs")
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
                args(&["-stream_loop", "5", "-i"], clip, &["-c", "copy"], &long),
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
        let mkv = read_all("mkv", "mkv")
            .into_iter()
            .enumerate()
            .map(|(i, f)| kvs_fragment(&f, i))
            .collect::<Option<Vec<_>>>()?;
        Some(Media {
            ts: read_all("ts", "ts"),
            fmp4_init: std::fs::read(dir.join("fmp4/init.mp4")).ok()?,
            fmp4: read_all("fmp4", "m4s"),
            mkv,
        })
    }

    /// Pieces in each path (they are cut alike).
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

/// An EBML element with a 1- or 8-byte size.
fn element(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    if body.len() < 127 {
        out.push(0x80 | body.len() as u8);
    } else {
        out.push(0x01);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    }
    out.extend_from_slice(body);
    out
}

fn tags(pairs: &[(&str, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in pairs {
        let mut simple = element(&[0x45, 0xA3], name.as_bytes());
        simple.extend(element(&[0x44, 0x87], value.as_bytes()));
        body.extend(element(&[0x73, 0x73], &element(&[0x67, 0xC8], &simple)));
    }
    element(&[0x12, 0x54, 0xC3, 0x67], &body)
}

/// Reshapes one ffmpeg MKV file as KVS sends fragment `index`: the Segment's size made
/// unknown, the fragment's tags before its first Cluster, the continuation token after.
fn kvs_fragment(file: &[u8], index: usize) -> Option<Vec<u8>> {
    // EBML header: 4-byte id, 1-byte size (ffmpeg's is short).
    let vint_len = |b: u8| b.leading_zeros() as usize + 1;
    let ebml_size_len = vint_len(*file.get(4)?);
    let mut size = u64::from(file[4] & (0xff >> ebml_size_len));
    for &b in file.get(5..4 + ebml_size_len)? {
        size = (size << 8) | u64::from(b);
    }
    let segment_at = 4 + ebml_size_len + size as usize;
    if file.get(segment_at..segment_at + 4)? != [0x18, 0x53, 0x80, 0x67] {
        return None;
    }
    let seg_size_len = vint_len(*file.get(segment_at + 4)?);
    let body_at = segment_at + 4 + seg_size_len;
    let cluster = body_at
        + file[body_at..]
            .windows(4)
            .position(|w| w == [0x1F, 0x43, 0xB6, 0x75])?;
    let producer = BASE_EPOCH_MS + index as i64 * PIECE_MS;
    let mut out = file[..segment_at + 4].to_vec();
    out.extend([0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    out.extend_from_slice(&file[body_at..cluster]);
    out.extend(tags(&[
        ("AWS_KINESISVIDEO_FRAGMENT_NUMBER", fragment_number(index)),
        (
            "AWS_KINESISVIDEO_SERVER_TIMESTAMP",
            format!("{}.{:03}", (producer + 40) / 1000, (producer + 40) % 1000),
        ),
        (
            "AWS_KINESISVIDEO_PRODUCER_TIMESTAMP",
            format!("{}.{:03}", producer / 1000, producer % 1000),
        ),
    ]));
    out.extend_from_slice(&file[cluster..]);
    out.extend(tags(&[
        ("AWS_KINESISVIDEO_MILLIS_BEHIND_NOW", "0".to_owned()),
        (
            "AWS_KINESISVIDEO_CONTINUATION_TOKEN",
            fragment_number(index),
        ),
    ]));
    Some(out)
}
