//! MPEG-TS: PAT → PMT → the first H.264/H.265 elementary stream → PES packets → access
//! units in Annex B form with their PTS (33-bit, unwrapped).
//!
//! One PES packet is one access unit (as every HLS packager writes them). A PES is
//! complete when the next one starts, or at [`Demuxer::end_of_segment`]. Lost sync
//! (random bytes) is recovered by searching for two sync bytes 188 bytes apart.

use super::{has_keyframe, DemuxError, Demuxer, Sample, MAX_BUFFER};
use crate::ingest::{Codec, StreamInfo};

const PACKET: usize = 188;
const SYNC: u8 = 0x47;
const CONTAINER: &str = "mpeg-ts";
/// A video PES larger than this is damage, not a picture.
const MAX_PES: usize = 16 << 20;

/// MPEG-TS demuxer.
#[derive(Default)]
pub struct TsDemuxer {
    buf: Vec<u8>,
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    info: Option<StreamInfo>,
    pes: Vec<u8>,
    out: std::collections::VecDeque<Sample>,
    /// Last raw PTS and the unwrapping offset.
    last_pts: Option<i64>,
    wrap_offset: i64,
    /// Bytes skipped to regain sync, for the caller's counters.
    skipped_bytes: u64,
    /// Damage seen since the last segment end: bytes skipped, packets lost.
    segment_skipped: u64,
    segment_lost: u32,
    /// The video PID's last continuity counter.
    last_cc: Option<u8>,
}

impl TsDemuxer {
    /// A demuxer waiting for the PAT.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes thrown away so far while looking for packet sync.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped_bytes
    }

    fn packet(&mut self, p: &[u8]) -> Result<(), DemuxError> {
        let pusi = p[1] & 0x40 != 0;
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let afc = (p[3] >> 4) & 3;
        if p[1] & 0x80 != 0 || afc & 1 == 0 {
            return Ok(()); // transport error, or no payload
        }
        let mut start = 4;
        if afc & 2 != 0 {
            start += 1 + usize::from(p[4]);
        }
        if start > PACKET {
            return Ok(()); // adaptation field claims more than the packet holds
        }
        let payload = &p[start..];
        if pid == 0 && pusi {
            self.pat(payload);
        } else if Some(pid) == self.pmt_pid && pusi {
            self.pmt(payload)?;
        } else if Some(pid) == self.video_pid {
            let cc = p[3] & 0x0f;
            if let Some(last) = self.last_cc.replace(cc) {
                if cc != (last + 1) & 0x0f && cc != last {
                    self.segment_lost += 1;
                }
            }
            if pusi {
                self.finish_pes();
            }
            if pusi || !self.pes.is_empty() {
                if self.pes.len() + payload.len() > MAX_PES {
                    self.pes.clear();
                    return Err(malformed("a video PES packet exceeds 16 MiB"));
                }
                self.pes.extend_from_slice(payload);
            }
        }
        Ok(())
    }

    /// The first program's PMT PID.
    fn pat(&mut self, payload: &[u8]) {
        let Some(section) = section(payload, 0x00) else {
            return;
        };
        // After the 8-byte header: 4-byte entries (program number, PID).
        for entry in section.get(8..).unwrap_or_default().chunks_exact(4) {
            let program = u16::from_be_bytes([entry[0], entry[1]]);
            if program != 0 {
                self.pmt_pid = Some((u16::from(entry[2] & 0x1f) << 8) | u16::from(entry[3]));
                return;
            }
        }
    }

    fn pmt(&mut self, payload: &[u8]) -> Result<(), DemuxError> {
        let Some(section) = section(payload, 0x02) else {
            return Ok(());
        };
        let Some(info_len) = section.get(10..12) else {
            return Ok(());
        };
        let mut at = 12 + (usize::from(info_len[0] & 0x0f) << 8 | usize::from(info_len[1]));
        let mut types = Vec::new();
        while let Some(es) = section.get(at..at + 5) {
            let pid = (u16::from(es[1] & 0x1f) << 8) | u16::from(es[2]);
            let codec = match es[0] {
                0x1b => Some(Codec::H264),
                0x24 => Some(Codec::H265),
                _ => None,
            };
            types.push(es[0]);
            if let Some(codec) = codec {
                if self.video_pid != Some(pid) {
                    self.pes.clear();
                }
                self.video_pid = Some(pid);
                if self.info.as_ref().is_none_or(|i| i.codec != codec) {
                    self.info = Some(StreamInfo {
                        codec,
                        extradata: Vec::new(),
                        width: 0,
                        height: 0,
                        fps: None,
                    });
                }
                return Ok(());
            }
            at += 5 + (usize::from(es[3] & 0x0f) << 8 | usize::from(es[4]));
        }
        Err(DemuxError::Unsupported {
            container: CONTAINER,
            message: format!("no H.264 or H.265 stream in the program (stream types {types:02x?})"),
        })
    }

    fn finish_pes(&mut self) {
        let pes = std::mem::take(&mut self.pes);
        let Some(codec) = self.info.as_ref().map(|i| i.codec) else {
            return;
        };
        // Start code, stream id, length, flags, PTS/DTS flags, header length.
        if pes.len() < 9 || pes[..3] != [0, 0, 1] {
            return;
        }
        let header_len = usize::from(pes[8]);
        let Some(data) = pes.get(9 + header_len..) else {
            return;
        };
        if pes[7] & 0x80 == 0 || header_len < 5 {
            return; // no PTS: we cannot place the picture in time
        }
        let t = &pes[9..14];
        let raw = (i64::from(t[0] >> 1) & 7) << 30
            | i64::from(t[1]) << 22
            | i64::from(t[2] >> 1) << 15
            | i64::from(t[3]) << 7
            | i64::from(t[4] >> 1);
        let pts_90k = self.unwrap(raw);
        if data.is_empty() {
            return;
        }
        self.out.push_back(Sample {
            keyframe: has_keyframe(codec, data, false),
            data: data.to_vec(),
            pts_90k,
            wall_ms: None,
            fragment: None,
        });
    }

    /// Extends 33-bit PTS across wraps (about every 26.5 hours).
    fn unwrap(&mut self, raw: i64) -> i64 {
        const WRAP: i64 = 1 << 33;
        if let Some(last) = self.last_pts {
            if last - raw > WRAP / 2 {
                self.wrap_offset += WRAP;
            } else if raw - last > WRAP / 2 && self.wrap_offset > 0 {
                self.wrap_offset -= WRAP;
            }
        }
        self.last_pts = Some(raw);
        raw + self.wrap_offset
    }
}

/// A PSI section's bytes (from `table_id`, CRC excluded) if it is complete in `payload`.
fn section(payload: &[u8], table_id: u8) -> Option<&[u8]> {
    let pointer = usize::from(*payload.first()?);
    let s = payload.get(1 + pointer..)?;
    if *s.first()? != table_id {
        return None;
    }
    let len = usize::from(s.get(1)? & 0x0f) << 8 | usize::from(*s.get(2)?);
    s.get(..(3 + len).checked_sub(4)?)
}

fn malformed(message: &str) -> DemuxError {
    DemuxError::Malformed {
        container: CONTAINER,
        message: message.to_owned(),
    }
}

impl Demuxer for TsDemuxer {
    fn push(&mut self, data: &[u8]) -> Result<(), DemuxError> {
        if self.buf.len() + data.len() > MAX_BUFFER {
            self.buf.clear();
            return Err(malformed("no packet sync within 64 MiB"));
        }
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let mut at = 0;
        let mut result = Ok(());
        while at + PACKET <= buf.len() {
            let synced = buf[at] == SYNC && buf.get(at + PACKET).is_none_or(|&b| b == SYNC);
            if !synced {
                at += 1;
                self.skipped_bytes += 1;
                self.segment_skipped += 1;
                continue;
            }
            if let Err(e) = self.packet(&buf[at..at + PACKET]) {
                result = Err(e);
            }
            at += PACKET;
        }
        self.buf = buf[at..].to_vec();
        result
    }

    fn end_of_segment(&mut self) -> Result<(), DemuxError> {
        let partial = self.buf.len();
        self.buf.clear();
        self.finish_pes();
        let (skipped, lost) = (self.segment_skipped, self.segment_lost);
        self.segment_skipped = 0;
        self.segment_lost = 0;
        // Packagers may restart continuity counters in each segment.
        self.last_cc = None;
        if skipped > 0 || lost > 0 || partial > 0 {
            return Err(malformed(&format!(
                "damaged segment: {skipped} bytes out of sync, {lost} video packets missing, \
                 {partial} bytes of a cut packet"
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

    fn demux_all(bytes: &[u8], chunk: usize) -> (TsDemuxer, Vec<Sample>, Result<(), DemuxError>) {
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            d.push(piece).unwrap();
            out.extend(std::iter::from_fn(|| d.next_sample()));
        }
        let end = d.end_of_segment();
        out.extend(std::iter::from_fn(|| d.next_sample()));
        (d, out, end)
    }

    #[test]
    fn every_picture_of_an_ffmpeg_clip_comes_out_with_its_pts() {
        let Some(bytes) = clip("clip.ts", &["-f", "mpegts"]) else {
            return;
        };
        for chunk in [188 * 7, 1000, 65536] {
            let (d, samples, end) = demux_all(&bytes, chunk);
            end.unwrap();
            assert_eq!(d.info().unwrap().codec, Codec::H264);
            assert_eq!(samples.len(), 50, "chunk {chunk}");
            // 25 fps is 3600 ticks apart; GOP 25 puts keyframes at 0 and 25.
            for pair in samples.windows(2) {
                assert_eq!(pair[1].pts_90k - pair[0].pts_90k, 3600);
            }
            let keys: Vec<_> = (0..50).filter(|&i| samples[i].keyframe).collect();
            assert_eq!(keys, [0, 25]);
            assert_eq!(samples[0].data[..4], [0, 0, 0, 1]);
        }
    }

    #[test]
    fn garbage_before_and_inside_is_skipped_and_sync_regained() {
        let Some(bytes) = clip("clip.ts", &["-f", "mpegts"]) else {
            return;
        };
        let mut damaged = vec![0x47, 1, 2, 3, 0x47, 9, 9];
        damaged.extend_from_slice(&bytes[..188 * 40]);
        damaged.extend_from_slice(&[0x55; 500]);
        damaged.extend_from_slice(&bytes[188 * 40..]);
        let (d, samples, end) = demux_all(&damaged, 4096);
        assert!(d.skipped_bytes() >= 500);
        let err = end.unwrap_err().to_string();
        assert!(err.contains("damaged segment"), "{err}");
        assert!(samples.len() >= 48, "{} samples", samples.len());
    }

    #[test]
    fn lost_packets_and_a_cut_segment_are_reported_at_its_end() {
        let Some(bytes) = clip("clip.ts", &["-f", "mpegts"]) else {
            return;
        };
        // Drop one packet in the middle and cut the last one short.
        let mut damaged = bytes[..188 * 100].to_vec();
        damaged.extend_from_slice(&bytes[188 * 101..bytes.len() - 100]);
        let (_, samples, end) = demux_all(&damaged, 188 * 10);
        let err = end.unwrap_err().to_string();
        assert!(err.contains("1 video packets missing"), "{err}");
        assert!(err.contains("88 bytes of a cut packet"), "{err}");
        assert!(samples.len() >= 49, "{}", samples.len());
    }

    #[test]
    fn pts_unwraps_across_the_33_bit_wrap() {
        let mut d = TsDemuxer::new();
        let near = (1i64 << 33) - 3600;
        assert_eq!(d.unwrap(near), near);
        assert_eq!(d.unwrap(0), 1 << 33);
        assert_eq!(d.unwrap(3600), (1 << 33) + 3600);
    }

    /// One TS packet carrying a PSI section (CRC left as zeros: it is not checked).
    fn psi(pid: u16, table: &[u8]) -> Vec<u8> {
        let mut p = vec![SYNC, 0x40 | (pid >> 8) as u8, pid as u8, 0x10, 0];
        p.extend_from_slice(table);
        p.extend_from_slice(&[0; 4]);
        p.resize(PACKET, 0xff);
        p
    }

    #[test]
    fn a_program_without_video_is_unsupported() {
        // PAT: program 1 → PMT PID 0x100. PMT: one AAC stream (type 0x0f) on 0x101.
        let pat = [0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xe1, 0x00];
        let pmt = [
            0x02, 0xb0, 18, 0, 1, 0xc1, 0, 0, 0xe1, 0x01, 0xf0, 0, 0x0f, 0xe1, 0x01, 0xf0, 0,
        ];
        let mut bytes = psi(0, &pat);
        bytes.extend(psi(0x100, &pmt));
        let err = TsDemuxer::new().push(&bytes).unwrap_err();
        assert!(err.to_string().contains("no H.264 or H.265"), "{err}");
        assert!(err.to_string().contains("0f"), "{err}");
    }
}
