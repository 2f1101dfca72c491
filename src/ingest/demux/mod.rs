//! Container demuxers for live sources: pure, synchronous and incremental.
//!
//! Bytes go in as they arrive from the network ([`Demuxer::push`]); access units come
//! out as soon as they are complete ([`Demuxer::next_sample`]). No I/O happens here, so
//! the parsers are unit-tested on ffmpeg-made clips and fuzzed (`fuzz/`) on any bytes.
//! Damaged input is an error for that input, never a panic, and memory per demuxer is
//! bounded by [`MAX_BUFFER`].
//!
//! - [`ts`]: MPEG-TS (KVS HLS's `MPEG_TS` container; Annex B access units).
//! - [`mp4`]: fragmented MP4 (KVS HLS's default `FRAGMENTED_MP4`; `avcC`/`hvcC`).
//! - [`mkv`]: Matroska as GetMedia streams it, fragment after fragment, with KVS's tags.

pub mod mkv;
pub mod mp4;
pub mod ts;

use super::{Codec, StreamInfo};

/// Most bytes a demuxer holds while waiting for an element or box to complete.
pub const MAX_BUFFER: usize = 64 << 20;

/// One access unit out of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The picture's NAL units, framed as [`StreamInfo::extradata`] says.
    pub data: Vec<u8>,
    /// Presentation time, 90 kHz, unwrapped so it only grows within a stream.
    pub pts_90k: i64,
    /// Whether decoding can start here.
    pub keyframe: bool,
    /// The producer's wall-clock time of this frame, epoch ms, where the container says.
    pub wall_ms: Option<i64>,
    /// The fragment it came in, where the container numbers them (KVS's fragment
    /// number in GetMedia's tags): replays are recognised by it.
    pub fragment: Option<u128>,
}

/// Why a container could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DemuxError {
    /// The bytes are not the container they should be.
    #[error("{container}: {message}")]
    Malformed {
        /// `mpeg-ts`, `fmp4` or `matroska`.
        container: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The container is fine but holds nothing we decode.
    #[error("{container}: {message}")]
    Unsupported {
        /// `mpeg-ts`, `fmp4` or `matroska`.
        container: &'static str,
        /// What is missing.
        message: String,
    },
}

/// An incremental container parser.
pub trait Demuxer: Send + Sync {
    /// Feeds the next bytes of the stream.
    fn push(&mut self, data: &[u8]) -> Result<(), DemuxError>;

    /// Marks the end of a self-contained piece (an HLS segment): a unit still being
    /// gathered is complete now.
    fn end_of_segment(&mut self) -> Result<(), DemuxError> {
        Ok(())
    }

    /// The video track's description, once the container has given it.
    fn info(&self) -> Option<&StreamInfo>;

    /// The next complete access unit, if any.
    fn next_sample(&mut self) -> Option<Sample>;
}

/// Whether an access unit holds a picture decoding can start at, by its NAL unit types.
/// `length_prefixed` says how units are framed: 4-byte lengths or Annex B start codes.
pub fn has_keyframe(codec: Codec, data: &[u8], length_prefixed: bool) -> bool {
    let is_key = |header: u8| match codec {
        // IDR slice.
        Codec::H264 => header & 0x1f == 5,
        // IRAP pictures: BLA, IDR, CRA.
        Codec::H265 => (16..=21).contains(&((header >> 1) & 0x3f)),
    };
    if length_prefixed {
        let mut at = 0usize;
        while at + 4 < data.len() {
            let len = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
            if is_key(data[at + 4]) {
                return true;
            }
            at = at.saturating_add(4).saturating_add(len as usize);
        }
        false
    } else {
        let mut zeros = 0usize;
        for (i, &b) in data.iter().enumerate() {
            if b == 1 && zeros >= 2 {
                if let Some(&header) = data.get(i + 1) {
                    if is_key(header) {
                        return true;
                    }
                }
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
        }
        false
    }
}

/// Big-endian reads that report truncation instead of panicking.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.data.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.bytes(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_be_bytes(a)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testdata::clip;
    use super::*;

    /// xorshift64: a deterministic stream of pseudo-random numbers.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn h265_comes_out_of_every_container_with_its_configuration() {
        const X265: [&str; 4] = [
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=25:min-keyint=25:bframes=0:scenecut=0",
        ];
        let cases: [(&str, &[&str], Box<dyn Demuxer>); 3] = [
            ("h265.ts", &["-f", "mpegts"], Box::new(ts::TsDemuxer::new())),
            (
                "h265-frag.mp4",
                &[
                    "-tag:v",
                    "hvc1",
                    "-movflags",
                    "+frag_keyframe+empty_moov+default_base_moof",
                    "-f",
                    "mp4",
                ],
                Box::new(mp4::Mp4Demuxer::new()),
            ),
            (
                "h265-live.mkv",
                &["-live", "1", "-f", "matroska"],
                Box::new(mkv::MkvDemuxer::new()),
            ),
        ];
        for (name, container, mut d) in cases {
            let args: Vec<&str> = X265.iter().chain(container).copied().collect();
            let Some(bytes) = clip(name, &args) else {
                return;
            };
            d.push(&bytes).unwrap();
            d.end_of_segment().unwrap();
            let info = d.info().unwrap().clone();
            assert_eq!(info.codec, Codec::H265, "{name}");
            let samples: Vec<Sample> = std::iter::from_fn(|| d.next_sample()).collect();
            assert_eq!(samples.len(), 50, "{name}");
            let keys: Vec<_> = (0..50).filter(|&i| samples[i].keyframe).collect();
            assert_eq!(keys, [0, 25], "{name}");
            if name.ends_with(".ts") {
                assert!(
                    info.extradata.is_empty(),
                    "parameter sets travel in-band in TS"
                );
            } else {
                assert_eq!(info.extradata[0], 1, "{name}: an hvcC record");
            }
        }
    }

    /// What the fuzz targets do (`fuzz/`), in miniature and on stable, every run:
    /// damaged copies of real clips, in random chunks, must never panic, and a
    /// the same demuxer then reads a clean copy whole.
    #[test]
    fn mutated_clips_never_panic_and_the_demuxer_recovers() {
        type Make = fn() -> Box<dyn Demuxer>;
        let cases: [(&str, &[&str], Make); 3] = [
            ("clip.ts", &["-f", "mpegts"], || {
                Box::new(ts::TsDemuxer::new())
            }),
            (
                "clip-frag.mp4",
                &[
                    "-movflags",
                    "+frag_keyframe+empty_moov+default_base_moof",
                    "-f",
                    "mp4",
                ],
                || Box::new(mp4::Mp4Demuxer::new()),
            ),
            ("clip-live.mkv", &["-live", "1", "-f", "matroska"], || {
                Box::new(mkv::MkvDemuxer::new())
            }),
        ];
        for (name, args, make) in cases {
            let Some(clean) = clip(name, args) else {
                return;
            };
            let mut next = rng(name.len() as u64 * 7919);
            for _ in 0..150 {
                let mut bytes = clean.clone();
                for _ in 0..=next() % 8 {
                    let at = (next() as usize) % bytes.len();
                    match next() % 4 {
                        0 => bytes[at] = next() as u8,
                        1 => bytes.truncate(at.max(1)),
                        2 => bytes
                            .splice(at..at, (0..next() % 64).map(|_| next() as u8))
                            .for_each(drop),
                        _ => {
                            let end = (at + (next() % 512) as usize).min(bytes.len());
                            bytes.drain(at..end);
                        }
                    }
                }
                let mut d = make();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let n = ((next() % 5000) as usize + 1).min(rest.len());
                    let _ = d.push(&rest[..n]);
                    rest = &rest[n..];
                    while d.next_sample().is_some() {}
                }
                let _ = d.end_of_segment();
                while d.next_sample().is_some() {}
                // The same demuxer reads the next clean segment (a new fragment, for MKV).
                let _ = d.push(&clean);
                let _ = d.end_of_segment();
                let n = std::iter::from_fn(|| d.next_sample()).count();
                assert!(
                    n >= 50,
                    "{name}: {n} samples from a clean copy after damage"
                );
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testdata {
    //! Clips made with ffmpeg for the parsers' tests, cached under `target/`.
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Makes (once) a 2-second 320×240 25 fps H.264 test pattern, GOP 25, no B-frames,
    /// with `args` added (the container; or `-c:v libx265 …` for H.265); `None` (and a
    /// loud note) when ffmpeg cannot.
    pub fn clip(name: &str, args: &[&str]) -> Option<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/demux-fixtures");
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(name);
        // Tests run on parallel threads, and several want the same clip: one makes it
        // while the others wait (two ffmpegs writing one temporary file gave a reader
        // half a clip).
        static MAKING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _making = MAKING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !path.exists() && !make(&path, args) {
            // Loud, as the integration tests' skips: scripts/test.sh lists these.
            let line = format!("SKIPPED demux tests: ffmpeg could not make {name}\n");
            eprint!("{line}");
            let log = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-skips.log");
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
            {
                use std::io::Write as _;
                let _ = f.write_all(line.as_bytes());
            }
            return None;
        }
        std::fs::read(&path).ok()
    }

    fn make(path: &Path, args: &[&str]) -> bool {
        // Unique to this process, so test binaries running at once never share it.
        let tmp = path.with_extension(format!(
            "tmp{}.{}",
            std::process::id(),
            path.extension().and_then(|e| e.to_str()).unwrap_or("bin")
        ));
        let status = Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
            .arg("testsrc2=size=320x240:rate=25:duration=2")
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-bf",
                "0",
                "-pix_fmt",
                "yuv420p",
            ])
            .args(args)
            .arg(&tmp)
            .status();
        matches!(status, Ok(s) if s.success()) && std::fs::rename(&tmp, path).is_ok()
    }
}
