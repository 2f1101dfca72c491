//! Byte rewriting for the fake KVS's live media: each served piece is one of the clip's
//! pieces with its timestamps moved to where the producer's timeline has got to, so a
//! live stream never runs out and its timecodes do what a test scripts (go on, start
//! again at 0, repeat, leap).
//!
//! - MPEG-TS: every PES header's PTS/DTS and every PCR move by the same 90 kHz delta.
//! - Fragmented MP4: every `traf`'s `tfdt` moves by the delta in its track's timescale
//!   (read from the init segment).
//! - Matroska: each Cluster's Timecode moves; the file is rebuilt as KVS sends a
//!   fragment (unknown-size Segment, KVS tags before the first Cluster and after it).

use std::collections::HashMap;

/// `data` (MPEG-TS) with its timestamps moved by `delta_90k`.
pub fn shift_ts(data: &[u8], delta_90k: i64) -> Vec<u8> {
    let mut out = data.to_vec();
    for packet in out.chunks_exact_mut(188) {
        if packet[0] != 0x47 {
            continue;
        }
        let start = packet[1] & 0x40 != 0;
        let control = (packet[3] >> 4) & 0x3;
        let mut at = 4;
        if control & 0x2 != 0 {
            let len = usize::from(packet[4]);
            if len > 0 && packet[5] & 0x10 != 0 && len >= 7 {
                // PCR: 33-bit base, 6 reserved bits, 9-bit extension.
                let b = &mut packet[6..12];
                let base = (u64::from(b[0]) << 25)
                    | (u64::from(b[1]) << 17)
                    | (u64::from(b[2]) << 9)
                    | (u64::from(b[3]) << 1)
                    | (u64::from(b[4]) >> 7);
                let base = shift33(base, delta_90k);
                b[0] = (base >> 25) as u8;
                b[1] = (base >> 17) as u8;
                b[2] = (base >> 9) as u8;
                b[3] = (base >> 1) as u8;
                b[4] = (b[4] & 0x7f) | (((base & 1) as u8) << 7);
            }
            at = 5 + len;
        }
        if !start || control & 0x1 == 0 || at + 19 > 188 {
            continue;
        }
        let pes = &mut packet[at..];
        if pes[..3] != [0, 0, 1] || pes[3] < 0xbc {
            continue;
        }
        let flags = pes[7] >> 6;
        if flags & 0x2 != 0 {
            shift_pes_time(&mut pes[9..14], delta_90k);
        }
        if flags == 0x3 {
            shift_pes_time(&mut pes[14..19], delta_90k);
        }
    }
    out
}

fn shift33(value: u64, delta_90k: i64) -> u64 {
    (value as i64 + delta_90k).rem_euclid(1 << 33) as u64
}

/// A PES PTS or DTS: 5 bytes, 33 bits between marker bits.
fn shift_pes_time(b: &mut [u8], delta_90k: i64) {
    let value = (u64::from(b[0] >> 1 & 0x7) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1);
    let v = shift33(value, delta_90k);
    b[0] = (b[0] & 0xf0) | (((v >> 30) as u8 & 0x7) << 1) | 1;
    b[1] = (v >> 22) as u8;
    b[2] = (((v >> 15) as u8) << 1) | 1;
    b[3] = (v >> 7) as u8;
    b[4] = ((v as u8) << 1) | 1;
}

/// Boxes in `data`: (type, start of the box, start of its payload, end).
fn boxes(data: &[u8]) -> Vec<([u8; 4], usize, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap();
        let (payload, end) = match size {
            1 if at + 16 <= data.len() => (
                at + 16,
                at + u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap()) as usize,
            ),
            0 => (at + 8, data.len()),
            _ => (at + 8, at + size),
        };
        if end < payload || end > data.len() {
            break;
        }
        out.push((kind, at, payload, end));
        at = end;
    }
    out
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(data[at..at + 4].try_into().unwrap())
}

/// Each track's timescale, by track id, from an fMP4 init segment.
pub fn fmp4_timescales(init: &[u8]) -> HashMap<u32, u32> {
    let mut scales = HashMap::new();
    for (kind, _, p, e) in boxes(init) {
        if &kind != b"moov" {
            continue;
        }
        for (kind, p, e) in boxes(&init[p..e])
            .into_iter()
            .map(|b| (b.0, b.2 + p, b.3 + p))
        {
            if &kind != b"trak" {
                continue;
            }
            let (mut id, mut scale) = (None, None);
            for (kind, _, tp, te) in boxes(&init[p..e]) {
                let (tp, te) = (tp + p, te + p);
                if &kind == b"tkhd" {
                    let v1 = init[tp] == 1;
                    id = Some(read_u32(init, tp + if v1 { 20 } else { 12 }));
                }
                if &kind == b"mdia" {
                    for (kind, _, mp, _) in boxes(&init[tp..te]) {
                        if &kind == b"mdhd" {
                            let mp = mp + tp;
                            let v1 = init[mp] == 1;
                            scale = Some(read_u32(init, mp + if v1 { 20 } else { 12 }));
                        }
                    }
                }
            }
            if let (Some(id), Some(scale)) = (id, scale) {
                scales.insert(id, scale);
            }
        }
    }
    scales
}

/// An fMP4 media segment with every `tfdt` moved by `delta_ms`.
pub fn shift_fmp4(data: &[u8], delta_ms: i64, timescales: &HashMap<u32, u32>) -> Vec<u8> {
    let mut out = data.to_vec();
    for (kind, _, p, e) in boxes(data) {
        if &kind != b"moof" {
            continue;
        }
        for (kind, _, tp, te) in boxes(&data[p..e]) {
            if &kind != b"traf" {
                continue;
            }
            let (tp, te) = (tp + p, te + p);
            let mut track = None;
            for (kind, _, bp, _) in boxes(&data[tp..te]) {
                let bp = bp + tp;
                match &kind {
                    b"tfhd" => track = Some(read_u32(data, bp + 4)),
                    b"tfdt" => {
                        let scale = track
                            .and_then(|t| timescales.get(&t))
                            .copied()
                            .unwrap_or(1000);
                        let delta = delta_ms * i64::from(scale) / 1000;
                        if data[bp] == 1 {
                            let at = bp + 4;
                            let v = u64::from_be_bytes(data[at..at + 8].try_into().unwrap());
                            let v = (v as i64 + delta).max(0) as u64;
                            out[at..at + 8].copy_from_slice(&v.to_be_bytes());
                        } else {
                            let at = bp + 4;
                            let v = i64::from(read_u32(data, at)) + delta;
                            out[at..at + 4].copy_from_slice(&(v.max(0) as u32).to_be_bytes());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

/// An EBML element with a 1- or 8-byte size.
pub fn element(id: &[u8], body: &[u8]) -> Vec<u8> {
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

/// An EBML variable-length integer at `at`: (value, its length); ids keep their marker.
fn vint(data: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *data.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 || at + len > data.len() {
        return None;
    }
    let mut value = if keep_marker {
        u64::from(first)
    } else {
        u64::from(first & (0xffu16 >> len) as u8)
    };
    for &b in &data[at + 1..at + len] {
        value = (value << 8) | u64::from(b);
    }
    Some((value, len))
}

/// EBML elements in `data`: (id, start, body start, end).
fn elements(data: &[u8]) -> Vec<(u64, usize, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some((id, n)) = vint(data, at, true) {
        let Some((size, m)) = vint(data, at + n, false) else {
            break;
        };
        let body = at + n + m;
        let end = body.saturating_add(size as usize).min(data.len());
        out.push((id, at, body, end));
        at = end;
        if at >= data.len() {
            break;
        }
    }
    out
}

const SEGMENT: u64 = 0x1853_8067;
const CLUSTER: u64 = 0x1F43_B675;
const CLUSTER_TIMECODE: u64 = 0xE7;
const SIMPLE_BLOCK: u64 = 0xA3;
const CUES: u64 = 0x1C53_BB6B;
const TAGS: u64 = 0x1254_C367;

/// KVS tags: a Tags element of SimpleTags.
pub fn tags(pairs: &[(&str, String)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in pairs {
        let mut simple = element(&[0x45, 0xA3], name.as_bytes());
        simple.extend(element(&[0x44, 0x87], value.as_bytes()));
        body.extend(element(&[0x73, 0x73], &element(&[0x67, 0xC8], &simple)));
    }
    element(&[0x12, 0x54, 0xC3, 0x67], &body)
}

/// An ffmpeg Matroska file rebuilt as KVS sends a fragment: its EBML header, then a
/// Segment of unknown size holding its Info and Tracks, `head_tags` (if any), its
/// Clusters with timecodes moved by `delta_ms`, then `tail_tags` (if any). With
/// `undecodable`, the video track's NAL units are all made of an unspecified type: a
/// well-formed stream from which no decoder gets a picture (a broken encoder). `None`
/// when the file is not the Matroska ffmpeg writes.
pub fn kvs_fragment(
    file: &[u8],
    delta_ms: i64,
    head_tags: Option<Vec<u8>>,
    tail_tags: Option<Vec<u8>>,
    undecodable: bool,
) -> Option<Vec<u8>> {
    let top = elements(file);
    let (_, _, _, ebml_end) = *top.first()?;
    let &(_, _, seg_body, seg_end) = top.iter().find(|e| e.0 == SEGMENT)?;
    let mut out = file[..ebml_end].to_vec();
    out.extend([
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    let children = elements(&file[seg_body..seg_end]);
    let mut head = head_tags;
    for (id, start, body, end) in children {
        let (start, body, end) = (start + seg_body, body + seg_body, end + seg_body);
        match id {
            CUES | TAGS => {}
            CLUSTER => {
                if let Some(tags) = head.take() {
                    out.extend(tags);
                }
                let mut cluster = Vec::new();
                for (cid, cstart, cbody, cend) in elements(&file[body..end]) {
                    let (cstart, cbody, cend) = (cstart + body, cbody + body, cend + body);
                    if cid == CLUSTER_TIMECODE {
                        let mut tc = 0u64;
                        for &b in &file[cbody..cend] {
                            tc = (tc << 8) | u64::from(b);
                        }
                        let tc = (tc as i64 + delta_ms).max(0) as u64;
                        cluster.extend(element(&[0xE7], &tc.to_be_bytes()));
                    } else if cid == SIMPLE_BLOCK && undecodable && file.get(cbody) == Some(&0x81) {
                        let mut block = file[cstart..cend].to_vec();
                        blank_nal_types(&mut block[cbody - cstart + 4..]);
                        cluster.extend(block);
                    } else {
                        cluster.extend_from_slice(&file[cstart..cend]);
                    }
                }
                out.extend(element(&[0x1F, 0x43, 0xB6, 0x75], &cluster));
            }
            _ => out.extend_from_slice(&file[start..end]),
        }
    }
    if let Some(tags) = tail_tags {
        out.extend(tags);
    }
    Some(out)
}

/// Sets the type of every 4-byte-length-prefixed NAL unit in `data` to 0 (unspecified).
fn blank_nal_types(data: &mut [u8]) {
    let mut at = 0;
    while at + 4 < data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        data[at + 4] = 0;
        at += 4 + len;
    }
}

#[test]
fn ts_times_move_and_wrap_at_33_bits() {
    let mut b = [0u8; 5];
    b[0] = 0x21;
    shift_pes_time(&mut b, 90_000);
    let read = |b: &[u8]| {
        (u64::from(b[0] >> 1 & 0x7) << 30)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] >> 1) << 15)
            | (u64::from(b[3]) << 7)
            | u64::from(b[4] >> 1)
    };
    assert_eq!(read(&b), 90_000);
    assert_eq!(b[0] & 0xf1, 0x21);
    shift_pes_time(&mut b, (1 << 33) - 90_000);
    assert_eq!(read(&b), 0);
}
