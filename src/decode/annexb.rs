//! Access units to Annex B, the byte stream NVDEC's parser reads: MP4 and MKV carry
//! NAL units behind 1-4 byte lengths with the parameter sets in an `avcC`/`hvcC`
//! record; the parser wants start codes and the parameter sets in band. Pure, so it is
//! tested without a GPU (a round trip through libavcodec's raw H.264/H.265 demuxer
//! decodes to the same pictures).

use crate::ingest::Codec;

const START: [u8; 4] = [0, 0, 0, 1];

/// Why a codec configuration record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec:?} configuration record: {message}")]
pub struct ConfigError {
    /// The stream's codec.
    pub codec: Codec,
    /// What is wrong with it.
    pub message: String,
}

/// Rewrites one stream's access units as Annex B.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnexB {
    /// Bytes of each NAL length (1..=4), or `None` when units already use start codes.
    length_size: Option<usize>,
    /// The parameter sets as Annex B, put before every keyframe.
    parameter_sets: Vec<u8>,
}

impl AnnexB {
    /// From a stream's extradata: an `avcC`/`hvcC` record (length-prefixed units),
    /// or Annex B parameter sets or nothing (units that already use start codes).
    pub fn new(codec: Codec, extradata: &[u8]) -> Result<Self, ConfigError> {
        if extradata.is_empty()
            || extradata.starts_with(&[0, 0, 1])
            || extradata.starts_with(&START)
        {
            return Ok(Self {
                length_size: None,
                parameter_sets: extradata.to_vec(),
            });
        }
        let err = |message: &str| ConfigError {
            codec,
            message: message.to_owned(),
        };
        let mut r = Reader(extradata);
        let mut parameter_sets = Vec::new();
        let mut push = |nal: &[u8]| {
            parameter_sets.extend_from_slice(&START);
            parameter_sets.extend_from_slice(nal);
        };
        let length_size = match codec {
            Codec::H264 => {
                let header = r.take(6).ok_or_else(|| err("shorter than its header"))?;
                if header[0] != 1 {
                    return Err(err(&format!("version {} is not 1", header[0])));
                }
                for _ in 0..header[5] & 0x1f {
                    push(r.sized().ok_or_else(|| err("an SPS runs past the end"))?);
                }
                let pps = r.u8().ok_or_else(|| err("no PPS count"))?;
                for _ in 0..pps {
                    push(r.sized().ok_or_else(|| err("a PPS runs past the end"))?);
                }
                usize::from(header[4] & 3) + 1
            }
            Codec::H265 => {
                let header = r.take(23).ok_or_else(|| err("shorter than its header"))?;
                if header[0] != 1 {
                    return Err(err(&format!("version {} is not 1", header[0])));
                }
                for _ in 0..header[22] {
                    r.u8().ok_or_else(|| err("an array runs past the end"))?;
                    let count = r.u16().ok_or_else(|| err("an array runs past the end"))?;
                    for _ in 0..count {
                        push(
                            r.sized()
                                .ok_or_else(|| err("a NAL unit runs past the end"))?,
                        );
                    }
                }
                usize::from(header[21] & 3) + 1
            }
        };
        if length_size == 3 {
            return Err(err("3-byte NAL lengths are not allowed"));
        }
        Ok(Self {
            length_size: Some(length_size),
            parameter_sets,
        })
    }

    /// `unit` as Annex B into `out` (cleared first), the parameter sets first when it
    /// is a keyframe. A length that runs past the unit's end keeps what came before it.
    pub fn convert_into(&self, unit: &[u8], keyframe: bool, out: &mut Vec<u8>) {
        out.clear();
        if keyframe {
            out.extend_from_slice(&self.parameter_sets);
        }
        let Some(size) = self.length_size else {
            out.extend_from_slice(unit);
            return;
        };
        let mut rest = unit;
        while rest.len() > size {
            let len = rest[..size]
                .iter()
                .fold(0usize, |n, &b| (n << 8) | usize::from(b));
            let Some(nal) = rest.get(size..size + len) else {
                break;
            };
            out.extend_from_slice(&START);
            out.extend_from_slice(nal);
            rest = &rest[size + len..];
        }
    }

    /// [`AnnexB::convert_into`] into a new buffer.
    pub fn convert(&self, unit: &[u8], keyframe: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(unit.len() + self.parameter_sets.len() + 16);
        self.convert_into(unit, keyframe, &mut out);
        out
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn sized(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An avcC with one SPS (67 ..) and one PPS (68 ..), 4-byte lengths.
    const AVCC: [u8; 19] = [
        1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 4, 0x68, 0xeb, 0xe3, 0xcb,
    ];

    #[test]
    fn avcc_units_get_start_codes_and_keyframes_their_parameter_sets() {
        let a = AnnexB::new(Codec::H264, &AVCC).unwrap();
        let unit = [0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06];
        assert_eq!(
            a.convert(&unit, true),
            [
                &[0, 0, 0, 1, 0x67, 0x64, 0, 0x1f][..],
                &[0, 0, 0, 1, 0x68, 0xeb, 0xe3, 0xcb],
                &[0, 0, 0, 1, 0x65, 0x88],
                &[0, 0, 0, 1, 0x06],
            ]
            .concat()
        );
        assert_eq!(
            a.convert(&unit, false),
            [0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x06]
        );
        // A length past the end keeps what came before it.
        assert_eq!(
            a.convert(&[0, 0, 0, 1, 0x41, 0, 0, 0, 9, 1], false),
            [0, 0, 0, 1, 0x41]
        );
    }

    #[test]
    fn short_lengths_and_start_code_streams() {
        let mut two = AVCC;
        two[4] = 0xfd; // lengthSizeMinusOne = 1
        let a = AnnexB::new(Codec::H264, &two).unwrap();
        assert_eq!(
            a.convert(&[0, 2, 0x41, 0x9a], false),
            [0, 0, 0, 1, 0x41, 0x9a]
        );
        let raw = AnnexB::new(Codec::H264, &[]).unwrap();
        assert_eq!(raw.convert(&[0, 0, 1, 0x65], true), [0, 0, 1, 0x65]);
        let sets = [0, 0, 0, 1, 0x67, 0x42];
        let inband = AnnexB::new(Codec::H264, &sets).unwrap();
        assert_eq!(
            inband.convert(&[0, 0, 1, 0x65], true),
            [0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65]
        );
    }

    #[test]
    fn hvcc_arrays_become_parameter_sets() {
        let mut hvcc = vec![1u8];
        hvcc.extend_from_slice(&[0; 20]);
        hvcc.push(0xf3); // lengthSizeMinusOne = 3
        hvcc.push(2); // arrays
        hvcc.extend_from_slice(&[0x20, 0, 1, 0, 2, 0x40, 0x01]); // VPS
        hvcc.extend_from_slice(&[0x21, 0, 2, 0, 2, 0x42, 0x01, 0, 1, 0x44]); // SPS, "PPS"
        let a = AnnexB::new(Codec::H265, &hvcc).unwrap();
        assert_eq!(
            a.convert(&[0, 0, 0, 2, 0x26, 0x01], true),
            [
                &[0, 0, 0, 1, 0x40, 0x01][..],
                &[0, 0, 0, 1, 0x42, 0x01],
                &[0, 0, 0, 1, 0x44],
                &[0, 0, 0, 1, 0x26, 0x01],
            ]
            .concat()
        );
    }

    #[test]
    fn broken_records_are_errors_that_say_what_is_wrong() {
        let e = AnnexB::new(Codec::H264, &[1, 0x64, 0]).unwrap_err();
        assert!(e.to_string().contains("shorter than its header"), "{e}");
        let e = AnnexB::new(Codec::H264, &AVCC[..11]).unwrap_err();
        assert!(e.to_string().contains("SPS runs past the end"), "{e}");
        let e = AnnexB::new(Codec::H264, &AVCC[..12]).unwrap_err();
        assert!(e.to_string().contains("no PPS count"), "{e}");
        let mut v2 = AVCC;
        v2[0] = 2;
        assert!(AnnexB::new(Codec::H264, &v2)
            .unwrap_err()
            .message
            .contains("version 2"));
        let mut three = AVCC;
        three[4] = 0xfe;
        assert!(AnnexB::new(Codec::H264, &three).is_err());
    }
}
