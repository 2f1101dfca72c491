//! Fragmented MP4: an init segment (`ftyp` + `moov`: the video track, its timescale and
//! its `avcC`/`hvcC`) and then `moof` + `mdat` pairs whose `traf`/`tfdt`/`trun` place each
//! sample's bytes and times.
//!
//! Top-level boxes are parsed once complete; a `moof` waits for the `mdat` after it.
//! Sample data offsets are taken relative to the `moof` (what `default-base-is-moof` and
//! CMAF mean, and what KVS and ffmpeg write).

use std::collections::VecDeque;

use super::{has_keyframe, DemuxError, Demuxer, Reader, Sample, MAX_BUFFER};
use crate::ingest::{Codec, StreamInfo};

const CONTAINER: &str = "fmp4";

#[derive(Debug, Clone, Copy, Default)]
struct Track {
    id: u32,
    timescale: u32,
    default_duration: u32,
    default_size: u32,
    default_flags: u32,
}

/// Fragmented MP4 demuxer.
#[derive(Default)]
pub struct Mp4Demuxer {
    buf: Vec<u8>,
    track: Option<Track>,
    info: Option<StreamInfo>,
    out: VecDeque<Sample>,
}

impl Mp4Demuxer {
    /// A demuxer waiting for the init segment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every complete top-level box (and `moof` + `mdat` pair) in the buffer.
    fn drain(&mut self) -> Result<(), DemuxError> {
        let mut at = 0;
        let result = loop {
            let Some((kind, size)) = box_header(&self.buf[at..]) else {
                break Ok(());
            };
            let size = match size {
                Some(s) if s >= 8 => s,
                Some(_) => break Err(malformed(format!("box '{}' is too small", fourcc(kind)))),
                // Size 0 ("to the end of the file") makes no sense in a live stream.
                None => break Err(malformed(format!("box '{}' has no size", fourcc(kind)))),
            };
            if size > MAX_BUFFER {
                break Err(malformed(format!(
                    "box '{}' claims {size} bytes",
                    fourcc(kind)
                )));
            }
            if at + size > self.buf.len() {
                break Ok(());
            }
            match &kind {
                b"moov" => {
                    let moov = self.buf[at..at + size].to_vec();
                    if let Err(e) = self.moov(&moov) {
                        break Err(e);
                    }
                }
                b"moof" => {
                    // Wait for the mdat that follows.
                    let next = at + size;
                    let Some((mdat_kind, mdat_size)) = box_header(&self.buf[next..]) else {
                        break Ok(());
                    };
                    let mdat_size = mdat_size.unwrap_or(usize::MAX);
                    if &mdat_kind == b"mdat" {
                        if !(8..=MAX_BUFFER).contains(&mdat_size) {
                            break Err(malformed(format!("mdat claims {mdat_size} bytes")));
                        }
                        if next + mdat_size > self.buf.len() {
                            break Ok(());
                        }
                        let fragment = self.buf[at..next + mdat_size].to_vec();
                        let r = self.fragment(&fragment, size);
                        at = next + mdat_size;
                        if let Err(e) = r {
                            break Err(e);
                        }
                        continue;
                    }
                    // A moof without its mdat: nothing to read; carry on.
                }
                _ => {}
            }
            at += size;
        };
        if let Err(e) = &result {
            // Drop what we could not parse; the next segment starts clean.
            self.buf.clear();
            return Err(e.clone());
        }
        self.buf.drain(..at);
        result
    }

    fn moov(&mut self, moov: &[u8]) -> Result<(), DemuxError> {
        let mut defaults: Vec<(u32, u32, u32, u32)> = Vec::new();
        let mut found = None;
        for (kind, body) in children(&moov[8..]) {
            match &kind {
                b"trak" if found.is_none() => found = trak(body)?,
                b"mvex" => {
                    for (kind, trex) in children(body) {
                        if &kind == b"trex" {
                            defaults.extend(trex_defaults(trex));
                        }
                    }
                }
                _ => {}
            }
        }
        let Some((mut track, info)) = found else {
            return Err(DemuxError::Unsupported {
                container: CONTAINER,
                message: "no H.264 or H.265 video track in the init segment".into(),
            });
        };
        if let Some(&(_, duration, size, flags)) = defaults.iter().find(|d| d.0 == track.id) {
            track.default_duration = duration;
            track.default_size = size;
            track.default_flags = flags;
        }
        self.track = Some(track);
        self.info = Some(info);
        Ok(())
    }

    /// One `moof` (its first `moof_size` bytes) and the `mdat` after it.
    fn fragment(&mut self, bytes: &[u8], moof_size: usize) -> Result<(), DemuxError> {
        let (Some(track), Some(info)) = (self.track, self.info.as_ref()) else {
            return Err(malformed("a fragment came before the init segment".into()));
        };
        let codec = info.codec;
        for (kind, traf) in children(&bytes[8..moof_size]) {
            if &kind != b"traf" {
                continue;
            }
            let mut t = track;
            let mut base_time: Option<u64> = None;
            let mut runs = Vec::new();
            let mut ours = false;
            for (kind, body) in children(traf) {
                match &kind {
                    b"tfhd" => ours = tfhd(body, &mut t).ok_or_else(|| truncated("tfhd"))?,
                    b"tfdt" => base_time = Some(tfdt(body).ok_or_else(|| truncated("tfdt"))?),
                    b"trun" => runs.push(body),
                    _ => {}
                }
            }
            if !ours {
                continue;
            }
            let mut time = i64::try_from(base_time.unwrap_or(0)).unwrap_or(i64::MAX);
            for run in runs {
                for s in trun(run, &t).ok_or_else(|| truncated("trun"))? {
                    let data = usize::try_from(s.offset)
                        .ok()
                        .and_then(|o| bytes.get(o..o.checked_add(s.size as usize)?))
                        .ok_or_else(|| malformed("a sample lies outside its mdat".into()))?;
                    let pts = time.saturating_add(i64::from(s.cts));
                    time = time.saturating_add(i64::from(s.duration));
                    let pts_90k =
                        (i128::from(pts) * 90_000 / i128::from(t.timescale.max(1))) as i64;
                    // Flags: sample_is_non_sync_sample is bit 16.
                    let keyframe = s.flags & 0x0001_0000 == 0 || has_keyframe(codec, data, true);
                    self.out.push_back(Sample {
                        data: data.to_vec(),
                        pts_90k,
                        keyframe,
                        wall_ms: None,
                        fragment: None,
                    });
                }
            }
        }
        Ok(())
    }
}

struct SampleRef {
    offset: i64,
    size: u32,
    duration: u32,
    flags: u32,
    cts: i32,
}

/// `trex`: (track id, default duration, size, flags).
fn trex_defaults(body: &[u8]) -> Option<(u32, u32, u32, u32)> {
    let mut r = Reader::new(body);
    r.skip(4)?;
    let id = r.u32()?;
    r.skip(4)?; // default sample description index
    Some((id, r.u32()?, r.u32()?, r.u32()?))
}

/// `tfhd`: whether it is our track, and its per-fragment defaults.
fn tfhd(body: &[u8], t: &mut Track) -> Option<bool> {
    let mut r = Reader::new(body);
    let flags = r.u32()? & 0x00ff_ffff;
    if r.u32()? != t.id {
        return Some(false);
    }
    if flags & 0x01 != 0 {
        r.u64()?; // base-data-offset: we count from the moof regardless
    }
    if flags & 0x02 != 0 {
        r.u32()?;
    }
    if flags & 0x08 != 0 {
        t.default_duration = r.u32()?;
    }
    if flags & 0x10 != 0 {
        t.default_size = r.u32()?;
    }
    if flags & 0x20 != 0 {
        t.default_flags = r.u32()?;
    }
    Some(true)
}

fn tfdt(body: &[u8]) -> Option<u64> {
    let mut r = Reader::new(body);
    let version = r.u8()?;
    r.skip(3)?;
    if version == 1 {
        r.u64()
    } else {
        r.u32().map(u64::from)
    }
}

fn trun(body: &[u8], t: &Track) -> Option<Vec<SampleRef>> {
    let mut r = Reader::new(body);
    let version = r.u8()?;
    let f = r.bytes(3)?;
    let flags = u32::from_be_bytes([0, f[0], f[1], f[2]]);
    let count = r.u32()? as usize;
    let mut offset = if flags & 0x01 != 0 {
        i64::from(r.u32()? as i32)
    } else {
        0
    };
    let first_flags = (flags & 0x04 != 0).then(|| r.u32()).flatten();
    let per_sample = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| flags & bit != 0)
        .count()
        * 4;
    if per_sample * count > r.remaining() {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let duration = if flags & 0x100 != 0 {
            r.u32()?
        } else {
            t.default_duration
        };
        let size = if flags & 0x200 != 0 {
            r.u32()?
        } else {
            t.default_size
        };
        let mut sample_flags = if flags & 0x400 != 0 {
            r.u32()?
        } else {
            t.default_flags
        };
        if i == 0 {
            if let Some(first) = first_flags {
                sample_flags = first;
            }
        }
        let cts = if flags & 0x800 != 0 {
            let raw = r.u32()?;
            if version == 0 {
                raw.min(i32::MAX as u32) as i32
            } else {
                raw as i32
            }
        } else {
            0
        };
        out.push(SampleRef {
            offset,
            size,
            duration,
            flags: sample_flags,
            cts,
        });
        offset = offset.saturating_add(i64::from(size));
    }
    Some(out)
}

/// `trak`: a video track with a codec we decode, or `None` for any other track.
fn trak(body: &[u8]) -> Result<Option<(Track, StreamInfo)>, DemuxError> {
    let mut track = Track::default();
    let mut video = false;
    let mut info = None;
    for (kind, b) in children(body) {
        match &kind {
            b"tkhd" => {
                let mut r = Reader::new(b);
                let version = r.u8().ok_or_else(|| truncated("tkhd"))?;
                r.skip(3 + if version == 1 { 16 } else { 8 });
                track.id = r.u32().ok_or_else(|| truncated("tkhd"))?;
            }
            b"mdia" => {
                for (kind, b) in children(b) {
                    match &kind {
                        b"mdhd" => {
                            let mut r = Reader::new(b);
                            let version = r.u8().ok_or_else(|| truncated("mdhd"))?;
                            r.skip(3 + if version == 1 { 16 } else { 8 });
                            track.timescale = r.u32().ok_or_else(|| truncated("mdhd"))?;
                        }
                        b"hdlr" => video = b.get(8..12) == Some(b"vide"),
                        b"minf" => info = stsd_entry(b),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !video || track.timescale == 0 {
        return Ok(None);
    }
    Ok(info.map(|i| (track, i)))
}

/// minf → stbl → stsd → the first `avc1`/`avc3`/`hvc1`/`hev1` entry.
fn stsd_entry(minf: &[u8]) -> Option<StreamInfo> {
    let stbl = children(minf).find(|(k, _)| k == b"stbl")?.1;
    let stsd = children(stbl).find(|(k, _)| k == b"stsd")?.1;
    // Full box header (4) + entry count (4), then sample entries.
    for (kind, entry) in children(stsd.get(8..)?) {
        let codec = match &kind {
            b"avc1" | b"avc3" => Codec::H264,
            b"hvc1" | b"hev1" => Codec::H265,
            _ => continue,
        };
        // VisualSampleEntry: 6 reserved + 2 index + 16 predefined, then width, height,
        // and 50 more bytes before its child boxes.
        let mut r = Reader::new(entry);
        r.skip(24)?;
        let width = u32::from(r.u16()?);
        let height = u32::from(r.u16()?);
        let config = if codec == Codec::H264 {
            b"avcC"
        } else {
            b"hvcC"
        };
        let extradata = children(entry.get(78..)?)
            .find(|(k, _)| k == config)?
            .1
            .to_vec();
        return Some(StreamInfo {
            codec,
            extradata,
            width,
            height,
            fps: None,
        });
    }
    None
}

/// (type, total size) of the box at the start of `b`; size `None` means "to the end".
fn box_header(b: &[u8]) -> Option<([u8; 4], Option<usize>)> {
    let mut r = Reader::new(b);
    let size = r.u32()?;
    let kind: [u8; 4] = r.bytes(4)?.try_into().ok()?;
    let size = match size {
        0 => None,
        1 => Some(usize::try_from(r.u64()?).unwrap_or(usize::MAX)),
        n => Some(n as usize),
    };
    Some((kind, size))
}

/// The child boxes inside `b`, stopping at the first that does not fit.
fn children(b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let (kind, size) = box_header(&b[at..])?;
        let header = if b.get(at..at + 4) == Some(&[0, 0, 0, 1]) {
            16
        } else {
            8
        };
        let size = size.unwrap_or(b.len() - at);
        if size < header || at.checked_add(size).is_none_or(|end| end > b.len()) {
            return None;
        }
        let body = &b[at + header..at + size];
        at += size;
        Some((kind, body))
    })
}

fn fourcc(kind: [u8; 4]) -> String {
    kind.iter()
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

fn malformed(message: String) -> DemuxError {
    DemuxError::Malformed {
        container: CONTAINER,
        message,
    }
}

fn truncated(what: &str) -> DemuxError {
    malformed(format!("box '{what}' is truncated"))
}

impl Demuxer for Mp4Demuxer {
    fn push(&mut self, data: &[u8]) -> Result<(), DemuxError> {
        if self.buf.len() + data.len() > MAX_BUFFER {
            self.buf.clear();
            return Err(malformed("more than 64 MiB without a complete box".into()));
        }
        self.buf.extend_from_slice(data);
        self.drain()
    }

    fn end_of_segment(&mut self) -> Result<(), DemuxError> {
        // A segment ends on a box boundary; leftovers are a truncated segment.
        let left = self.buf.len();
        self.buf.clear();
        if left > 0 {
            return Err(malformed(format!(
                "segment ended inside a box ({left} bytes left)"
            )));
        }
        Ok(())
    }

    fn info(&self) -> Option<&StreamInfo> {
        self.info.as_ref()
    }

    fn next_sample(&mut self) -> Option<Sample> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::clip;
    use super::*;

    const FRAG: [&str; 4] = [
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof",
        "-f",
        "mp4",
    ];

    #[test]
    fn every_sample_of_an_ffmpeg_fragmented_mp4_comes_out() {
        let Some(bytes) = clip("clip-frag.mp4", &FRAG) else {
            return;
        };
        for chunk in [100, 4096, 1 << 20] {
            let mut d = Mp4Demuxer::new();
            let mut samples = Vec::new();
            for piece in bytes.chunks(chunk) {
                d.push(piece).unwrap();
                samples.extend(std::iter::from_fn(|| d.next_sample()));
            }
            d.end_of_segment().unwrap();
            let info = d.info().unwrap();
            assert_eq!(
                (info.codec, info.width, info.height),
                (Codec::H264, 320, 240)
            );
            assert_eq!(info.extradata[0], 1, "an avcC record");
            assert_eq!(samples.len(), 50, "chunk {chunk}");
            for pair in samples.windows(2) {
                assert_eq!(pair[1].pts_90k - pair[0].pts_90k, 3600);
            }
            let keys: Vec<_> = (0..50).filter(|&i| samples[i].keyframe).collect();
            assert_eq!(keys, [0, 25]);
            // Length-prefixed NAL units that fill the sample exactly.
            let s = &samples[3].data;
            let first = u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
            assert!(first + 4 <= s.len());
        }
    }

    #[test]
    fn a_child_box_claiming_the_whole_address_space_is_refused_not_a_panic() {
        // Found by `fuzz/run.sh`: a 64-bit size (size field 1) of u64::MAX inside moov.
        let mut moov = vec![0, 0, 0, 24, b'm', b'o', b'o', b'v', 0, 0, 0, 1];
        moov.extend_from_slice(b"trak");
        moov.extend_from_slice(&u64::MAX.to_be_bytes());
        let err = Mp4Demuxer::new().push(&moov).unwrap_err();
        assert!(
            err.to_string().contains("no H.264 or H.265 video track"),
            "{err}"
        );
    }

    #[test]
    fn a_fragment_before_the_init_segment_is_an_error() {
        let Some(bytes) = clip("clip-frag.mp4", &FRAG) else {
            return;
        };
        let moof = bytes.windows(4).position(|w| w == b"moof").unwrap() - 4;
        let err = Mp4Demuxer::new().push(&bytes[moof..]).unwrap_err();
        assert!(err.to_string().contains("before the init segment"), "{err}");
    }

    #[test]
    fn a_truncated_segment_is_reported_at_its_end() {
        let Some(bytes) = clip("clip-frag.mp4", &FRAG) else {
            return;
        };
        let mut d = Mp4Demuxer::new();
        d.push(&bytes[..bytes.len() - 1000]).unwrap();
        let err = d.end_of_segment().unwrap_err();
        assert!(
            err.to_string().contains("segment ended inside a box"),
            "{err}"
        );
        // And the demuxer reads the next complete fragment afterwards.
        assert!(std::iter::from_fn(|| d.next_sample()).count() >= 25);
    }
}
