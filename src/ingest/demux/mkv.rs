//! Matroska as KVS `GetMedia` streams it: one EBML document per fragment (EBML header,
//! an unknown-size Segment with Info, Tracks, a Tags element carrying
//! `AWS_KINESISVIDEO_FRAGMENT_NUMBER` and `..._PRODUCER_TIMESTAMP`, one Cluster, and a
//! trailing Tags with `..._CONTINUATION_TOKEN`), back to back without end.
//!
//! The parser is flat: it enters the master elements it cares about by consuming only
//! their headers (so unknown sizes cost nothing), reads the leaves it needs, and skips
//! everything else even when it is larger than what has arrived. After damage it drops
//! bytes until the next fragment's EBML header.

use std::collections::VecDeque;

use super::{has_keyframe, DemuxError, Demuxer, Sample, MAX_BUFFER};
use crate::ingest::{Codec, StreamInfo};

const CONTAINER: &str = "matroska";

const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const VIDEO: u32 = 0xE0;
const TAGS: u32 = 0x1254_C367;
const TAG: u32 = 0x7373;
const SIMPLE_TAG: u32 = 0x67C8;
const BLOCK_GROUP: u32 = 0xA0;
const INFO: u32 = 0x1549_A966;

const TIMECODE_SCALE: u32 = 0x2A_D7B1;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const DEFAULT_DURATION: u32 = 0x23_E383;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const TIMECODE: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK: u32 = 0xA1;
const TAG_NAME: u32 = 0x45A3;
const TAG_STRING: u32 = 0x4487;

/// Elements entered rather than read whole.
const MASTERS: [u32; 10] = [
    SEGMENT,
    CLUSTER,
    TRACKS,
    TRACK_ENTRY,
    VIDEO,
    TAGS,
    TAG,
    SIMPLE_TAG,
    BLOCK_GROUP,
    INFO,
];

/// What one TrackEntry said.
#[derive(Debug, Default, Clone)]
struct TrackEntry {
    number: u64,
    kind: u64,
    codec_id: String,
    private: Vec<u8>,
    width: u32,
    height: u32,
    default_duration_ns: u64,
}

/// The KVS metadata of the fragment being read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FragmentTags {
    /// `AWS_KINESISVIDEO_FRAGMENT_NUMBER`.
    pub fragment_number: Option<String>,
    /// `AWS_KINESISVIDEO_PRODUCER_TIMESTAMP`, epoch ms.
    pub producer_ms: Option<i64>,
    /// `AWS_KINESISVIDEO_CONTINUATION_TOKEN`: where a new GetMedia resumes after this.
    pub continuation_token: Option<String>,
    /// `AWS_KINESISVIDEO_ERROR_CODE`, if KVS reported one in the stream.
    pub error: Option<String>,
}

/// Matroska demuxer for a GetMedia stream (or any live MKV).
pub struct MkvDemuxer {
    buf: Vec<u8>,
    /// Bytes still to discard of an element being skipped.
    skip: u64,
    /// After damage: discard until the next EBML header.
    resync: bool,
    /// Bytes of the element still arriving already searched for a fragment start.
    searched: usize,
    timecode_scale_ns: u64,
    entry: Option<TrackEntry>,
    video_track: Option<u64>,
    info: Option<StreamInfo>,
    cluster_tc: i64,
    /// Cluster-relative time of the fragment's first block, for producer time offsets.
    first_block_tc: Option<i64>,
    tag_name: Option<String>,
    tags: FragmentTags,
    out: VecDeque<Sample>,
}

impl Default for MkvDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl MkvDemuxer {
    /// A demuxer waiting for the first EBML header.
    pub fn new() -> Self {
        Self {
            buf: Vec::new(),
            skip: 0,
            resync: false,
            searched: 0,
            timecode_scale_ns: 1_000_000,
            entry: None,
            video_track: None,
            info: None,
            cluster_tc: 0,
            first_block_tc: None,
            tag_name: None,
            tags: FragmentTags::default(),
            out: VecDeque::new(),
        }
    }

    /// The KVS tags of the fragment read last.
    pub fn tags(&self) -> &FragmentTags {
        &self.tags
    }

    fn drain(&mut self) -> Result<(), DemuxError> {
        let mut at = 0usize;
        let mut first_error = None;
        loop {
            if self.skip > 0 {
                let available = self.buf.len() - at;
                let n = available.min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if let Some(i) = fragment_start(&self.buf[at..at + n]) {
                    // A damaged size ran into the next fragment: read on from there.
                    first_error.get_or_insert_with(overrun);
                    self.skip = 0;
                    self.entry = None;
                    at += i;
                    continue;
                }
                at += n;
                self.skip -= n as u64;
                if self.skip > 0 {
                    break;
                }
            }
            if self.resync {
                let found = self.buf[at..]
                    .windows(4)
                    .position(|w| w == EBML.to_be_bytes());
                match found {
                    Some(i) => {
                        at += i;
                        self.resync = false;
                    }
                    None => {
                        at = self.buf.len().saturating_sub(3).max(at);
                        break;
                    }
                }
            }
            match self.element(at) {
                Ok(Some(next)) => at = next,
                Ok(None) => break,
                Err(e) => {
                    // Drop the damaged fragment: look for the next one from here on.
                    first_error.get_or_insert(e);
                    self.skip = 0;
                    self.resync = true;
                    self.searched = 0;
                    self.entry = None;
                    at += 1;
                }
            }
        }
        self.buf.drain(..at);
        first_error.map_or(Ok(()), Err)
    }

    /// Handles the element at `at`: where the next one starts, or `None` to wait for
    /// more bytes.
    fn element(&mut self, at: usize) -> Result<Option<usize>, DemuxError> {
        let Some((id, size, header)) = element_header(&self.buf[at..])? else {
            return Ok(None);
        };
        // A fragment cut short leaves half an element header; the next fragment's EBML
        // id must not be eaten as the rest of it.
        let span = &self.buf[at + 1..(at + header + 3).min(self.buf.len())];
        if span.windows(4).any(|w| w == EBML.to_be_bytes()) {
            return Err(overrun());
        }
        if MASTERS.contains(&id) || id == EBML {
            self.enter(id)?;
            if id == EBML {
                // The EBML header's children (version, doctype) do not matter.
                let size =
                    size.ok_or_else(|| malformed("an EBML header of unknown size".into()))?;
                self.skip = size;
            }
            return Ok(Some(at + header));
        }
        let Some(size) = size else {
            return Err(malformed(format!("element {id:#x} has an unknown size")));
        };
        if !is_read(id) {
            self.skip = size;
            return Ok(Some(at + header));
        }
        if size > MAX_BUFFER as u64 {
            return Err(malformed(format!("element {id:#x} claims {size} bytes")));
        }
        let end = at + header + size as usize;
        // If the next fragment begins inside this element, its size was damage. Search
        // only what arrived since the last push (less a header's overlap).
        let from = at + header + self.searched.saturating_sub(16);
        if fragment_start(&self.buf[from..end.min(self.buf.len())]).is_some() {
            self.searched = 0;
            return Err(overrun());
        }
        if end > self.buf.len() {
            self.searched = self.buf.len() - (at + header);
            return Ok(None);
        }
        self.searched = 0;
        let body = self.buf[at + header..end].to_vec();
        self.leaf(id, &body)?;
        Ok(Some(end))
    }

    /// A master element starts.
    fn enter(&mut self, id: u32) -> Result<(), DemuxError> {
        match id {
            EBML => {
                self.commit_entry()?;
                self.tags = FragmentTags::default();
                self.first_block_tc = None;
            }
            TRACK_ENTRY => {
                self.commit_entry()?;
                self.entry = Some(TrackEntry::default());
            }
            CLUSTER | TAGS | SEGMENT => self.commit_entry()?,
            SIMPLE_TAG => self.tag_name = None,
            _ => {}
        }
        Ok(())
    }

    fn commit_entry(&mut self) -> Result<(), DemuxError> {
        let Some(e) = self.entry.take() else {
            return Ok(());
        };
        if e.kind != 1 {
            return Ok(());
        }
        let codec = match e.codec_id.as_str() {
            "V_MPEG4/ISO/AVC" => Codec::H264,
            "V_MPEGH/ISO/HEVC" => Codec::H265,
            other => {
                if self.video_track.is_none() {
                    return Err(DemuxError::Unsupported {
                        container: CONTAINER,
                        message: format!(
                            "video codec {other} is not supported (H.264 and H.265 are)"
                        ),
                    });
                }
                return Ok(());
            }
        };
        let info = StreamInfo {
            codec,
            extradata: e.private,
            width: e.width,
            height: e.height,
            fps: (e.default_duration_ns > 0).then(|| 1e9 / e.default_duration_ns as f64),
        };
        match &self.info {
            // Every KVS fragment repeats the track; the first one configures the decoder.
            Some(old) if old.codec != info.codec => {
                return Err(DemuxError::Unsupported {
                    container: CONTAINER,
                    message: format!(
                        "the codec changed mid-stream ({:?} → {:?})",
                        old.codec, info.codec
                    ),
                })
            }
            Some(_) => {}
            None => self.info = Some(info),
        }
        self.video_track = Some(e.number);
        Ok(())
    }

    fn leaf(&mut self, id: u32, body: &[u8]) -> Result<(), DemuxError> {
        match id {
            // The spec allows any scale; beyond a second per tick is damage.
            TIMECODE_SCALE => self.timecode_scale_ns = uint(body).clamp(1, 1_000_000_000),
            TIMECODE => self.cluster_tc = i64::try_from(uint(body)).unwrap_or(i64::MAX),
            SIMPLE_BLOCK | BLOCK => self.block(body, id == SIMPLE_BLOCK)?,
            TAG_NAME => self.tag_name = Some(String::from_utf8_lossy(body).into_owned()),
            TAG_STRING => {
                let value = String::from_utf8_lossy(body)
                    .trim_end_matches('\0')
                    .to_owned();
                match self.tag_name.as_deref() {
                    Some("AWS_KINESISVIDEO_FRAGMENT_NUMBER") => {
                        self.tags.fragment_number = Some(value)
                    }
                    Some("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP") => {
                        self.tags.producer_ms = parse_epoch_ms(&value)
                    }
                    Some("AWS_KINESISVIDEO_CONTINUATION_TOKEN") => {
                        self.tags.continuation_token = Some(value)
                    }
                    Some("AWS_KINESISVIDEO_ERROR_CODE") => self.tags.error = Some(value),
                    _ => {}
                }
            }
            _ => {
                let Some(entry) = self.entry.as_mut() else {
                    return Ok(());
                };
                match id {
                    TRACK_NUMBER => entry.number = uint(body),
                    TRACK_TYPE => entry.kind = uint(body),
                    CODEC_ID => {
                        entry.codec_id = String::from_utf8_lossy(body)
                            .trim_end_matches('\0')
                            .to_owned()
                    }
                    CODEC_PRIVATE => entry.private = body.to_vec(),
                    PIXEL_WIDTH => entry.width = uint(body) as u32,
                    PIXEL_HEIGHT => entry.height = uint(body) as u32,
                    DEFAULT_DURATION => entry.default_duration_ns = uint(body),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn block(&mut self, body: &[u8], simple: bool) -> Result<(), DemuxError> {
        let Some((track, n)) = vint(body, false) else {
            return Err(malformed("a block with a bad track number".into()));
        };
        let track = track.unwrap_or(u64::MAX);
        let Some(head) = body.get(n..n + 3) else {
            return Err(malformed("a block shorter than its header".into()));
        };
        if Some(track) != self.video_track {
            return Ok(());
        }
        let Some(codec) = self.info.as_ref().map(|i| i.codec) else {
            return Ok(());
        };
        let relative = i64::from(i16::from_be_bytes([head[0], head[1]]));
        let flags = head[2];
        if flags & 0x06 != 0 {
            return Err(malformed("laced video blocks are not supported".into()));
        }
        let data = &body[n + 3..];
        if data.is_empty() {
            return Ok(());
        }
        let ticks = self.cluster_tc.saturating_add(relative);
        let pts_90k = (i128::from(ticks) * i128::from(self.timecode_scale_ns) * 9 / 100_000) as i64;
        let first = *self.first_block_tc.get_or_insert(ticks);
        let wall_ms = self.tags.producer_ms.map(|p| {
            let offset_ns =
                (i128::from(ticks) - i128::from(first)) * i128::from(self.timecode_scale_ns);
            let offset_ms =
                (offset_ns / 1_000_000).clamp(i128::from(i64::MIN), i128::from(i64::MAX));
            p.saturating_add(offset_ms as i64)
        });
        self.out.push_back(Sample {
            keyframe: (simple && flags & 0x80 != 0) || has_keyframe(codec, data, true),
            data: data.to_vec(),
            pts_90k,
            wall_ms,
            fragment: self
                .tags
                .fragment_number
                .as_deref()
                .and_then(|n| n.parse().ok()),
        });
        Ok(())
    }
}

/// Where a fragment's EBML header starts in `b`: the EBML id, its size, then the
/// EBMLVersion element every muxer writes first (so video bytes rarely look like one).
fn fragment_start(b: &[u8]) -> Option<usize> {
    let magic = EBML.to_be_bytes();
    let mut from = 0;
    while let Some(i) = b.get(from..)?.windows(4).position(|w| w == magic) {
        let at = from + i;
        if let Some(&size) = b.get(at + 4) {
            let len = size.leading_zeros() as usize + 1;
            if len <= 8 && b.get(at + 4 + len..at + 6 + len) == Some(&[0x42, 0x86]) {
                return Some(at);
            }
        }
        from = at + 1;
    }
    None
}

fn overrun() -> DemuxError {
    malformed("an element runs into the next fragment (damaged size)".into())
}

fn is_read(id: u32) -> bool {
    matches!(
        id,
        TIMECODE_SCALE
            | TRACK_NUMBER
            | TRACK_TYPE
            | CODEC_ID
            | CODEC_PRIVATE
            | DEFAULT_DURATION
            | PIXEL_WIDTH
            | PIXEL_HEIGHT
            | TIMECODE
            | SIMPLE_BLOCK
            | BLOCK
            | TAG_NAME
            | TAG_STRING
    )
}

/// An EBML variable-length integer: (value, or `None` when all value bits are ones,
/// i.e. "unknown"; bytes used). `keep_marker` keeps the length bits (element IDs).
fn vint(b: &[u8], keep_marker: bool) -> Option<(Option<u64>, usize)> {
    let first = *b.first()?;
    if first == 0 {
        return Some((None, 0)); // longer than 8 bytes: invalid, reported by the caller
    }
    let len = first.leading_zeros() as usize + 1;
    let bytes = b.get(..len)?;
    let mask = if keep_marker {
        0xff
    } else {
        (0xffu16 >> len) as u8
    };
    let mut value = u64::from(first & mask);
    for &byte in &bytes[1..] {
        value = (value << 8) | u64::from(byte);
    }
    let all_ones = (1u64 << (7 * len)) - 1;
    let unknown = !keep_marker && value == all_ones;
    Some(((!unknown).then_some(value), len))
}

/// (id, size or unknown, header length), `None` if more bytes are needed.
#[allow(clippy::type_complexity)]
fn element_header(b: &[u8]) -> Result<Option<(u32, Option<u64>, usize)>, DemuxError> {
    let Some((id, id_len)) = vint(b, true) else {
        return Ok(None);
    };
    if id_len == 0 || id_len > 4 {
        return Err(malformed(format!("bad element id byte {:#04x}", b[0])));
    }
    let Some((size, size_len)) = vint(&b[id_len..], false) else {
        return Ok(None);
    };
    if size_len == 0 {
        return Err(malformed("bad element size".into()));
    }
    Ok(Some((id.unwrap_or(0) as u32, size, id_len + size_len)))
}

fn uint(body: &[u8]) -> u64 {
    body.iter().take(8).fold(0, |v, &b| (v << 8) | u64::from(b))
}

/// KVS writes producer timestamps as epoch seconds with a fraction; plain milliseconds
/// are accepted too.
fn parse_epoch_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.contains('.') {
        let secs: f64 = t.parse().ok()?;
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    let n: i64 = t.parse().ok()?;
    Some(if n > 100_000_000_000 {
        n
    } else {
        n.saturating_mul(1000)
    })
}

fn malformed(message: String) -> DemuxError {
    DemuxError::Malformed {
        container: CONTAINER,
        message,
    }
}

impl Demuxer for MkvDemuxer {
    fn push(&mut self, data: &[u8]) -> Result<(), DemuxError> {
        if self.buf.len() + data.len() > MAX_BUFFER {
            self.buf.clear();
            self.resync = true;
            self.searched = 0;
            return Err(malformed(
                "more than 64 MiB without a complete element".into(),
            ));
        }
        self.buf.extend_from_slice(data);
        self.drain()
    }

    fn info(&self) -> Option<&StreamInfo> {
        self.info.as_ref()
    }

    fn next_sample(&mut self) -> Option<Sample> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests;
