//! The Matroska demuxer on ffmpeg-made clips and KVS-shaped fragments: every chunking,
//! tags, continuation tokens and damage.

use super::super::testdata::clip;
use super::*;

fn demux(d: &mut MkvDemuxer, bytes: &[u8], chunk: usize) -> Vec<Sample> {
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        let _ = d.push(piece);
        out.extend(std::iter::from_fn(|| d.next_sample()));
    }
    out
}

#[test]
fn every_block_of_an_ffmpeg_live_mkv_comes_out() {
    let Some(bytes) = clip("clip-live.mkv", &["-live", "1", "-f", "matroska"]) else {
        return;
    };
    for chunk in [1, 77, 4096, 1 << 20] {
        let mut d = MkvDemuxer::new();
        let samples = demux(&mut d, &bytes, chunk);
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
    }
}

/// A minimal KVS-style fragment: EBML header, unknown-size Segment, tags, track,
/// cluster with one key block.
fn fragment(number: &str, producer: &str, tc: u8) -> Vec<u8> {
    let el = |id: &[u8], body: &[u8]| {
        let mut v = id.to_vec();
        v.push(0x80 | body.len() as u8);
        v.extend_from_slice(body);
        v
    };
    let tag = |name: &str, value: &str| {
        let mut st = el(&[0x45, 0xA3], name.as_bytes());
        st.extend(el(&[0x44, 0x87], value.as_bytes()));
        el(&[0x73, 0x73], &el(&[0x67, 0xC8], &st))
    };
    let mut header = el(&[0x42, 0x86], &[1]);
    header.extend(el(&[0x42, 0x82], b"matroska"));
    let mut out = el(&[0x1A, 0x45, 0xDF, 0xA3], &header);
    out.extend([
        0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    let mut entry = el(&[0xD7], &[1]);
    entry.extend(el(&[0x83], &[1]));
    entry.extend(el(&[0x86], b"V_MPEG4/ISO/AVC"));
    entry.extend(el(&[0x63, 0xA2], &[1, 0x64, 0, 0x1f, 0xff]));
    out.extend(el(&[0x16, 0x54, 0xAE, 0x6B], &el(&[0xAE], &entry)));
    let mut tags = tag("AWS_KINESISVIDEO_FRAGMENT_NUMBER", number);
    tags.extend(tag("AWS_KINESISVIDEO_PRODUCER_TIMESTAMP", producer));
    out.extend(el(&[0x12, 0x54, 0xC3, 0x67], &tags));
    out.extend([0x1F, 0x43, 0xB6, 0x75, 0xff]); // unknown-size cluster
    out.extend(el(&[0xE7], &[tc]));
    // Track 1, +10 ms, keyframe; one IDR NAL unit, length-prefixed.
    out.extend(el(&[0xA3], &[0x81, 0, 10, 0x80, 0, 0, 0, 2, 0x65, 0x88]));
    out.extend(el(
        &[0x12, 0x54, 0xC3, 0x67],
        &tag("AWS_KINESISVIDEO_CONTINUATION_TOKEN", number),
    ));
    out
}

#[test]
fn kvs_fragments_carry_their_number_producer_time_and_token() {
    let mut bytes = fragment("9100", "1700000000.250", 100);
    bytes.extend(fragment("9101", "1700000002.250", 200));
    let mut d = MkvDemuxer::new();
    let samples = demux(&mut d, &bytes, 5);
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].pts_90k, 110 * 90);
    assert_eq!(samples[1].pts_90k, 210 * 90);
    assert_eq!(samples[0].wall_ms, Some(1_700_000_000_250));
    assert_eq!(samples[1].wall_ms, Some(1_700_000_002_250));
    assert!(samples.iter().all(|s| s.keyframe));
    assert_eq!(d.tags().fragment_number.as_deref(), Some("9101"));
    assert_eq!(d.tags().continuation_token.as_deref(), Some("9101"));
}

#[test]
fn random_bytes_cost_only_the_fragment_they_hit() {
    let mut bytes = fragment("1", "1700000000.000", 1);
    bytes.extend([0x00, 0x13, 0x77, 0x01, 0x02]);
    bytes.extend(fragment("2", "1700000001.000", 2));
    bytes.extend(fragment("3", "1700000002.000", 3));
    let mut d = MkvDemuxer::new();
    let samples = demux(&mut d, &bytes, 1000);
    let pts: Vec<_> = samples.iter().map(|s| s.pts_90k / 90).collect();
    assert_eq!(pts, [11, 12, 13]);
}

#[test]
fn a_damaged_size_cannot_swallow_the_fragments_after_it() {
    // Fragment 1's block claims 1 MiB: the next fragment's header shows it lies.
    let mut first = fragment("1", "1700000000.000", 1);
    let block = first.windows(2).position(|w| w == [0xA3, 0x8A]).unwrap();
    first.splice(block + 1..block + 2, [0x10, 0x10, 0x00, 0x00]);
    let mut bytes = first;
    bytes.extend(fragment("2", "1700000001.000", 2));
    bytes.extend(fragment("3", "1700000002.000", 3));
    for chunk in [7, 100, 4096] {
        let mut d = MkvDemuxer::new();
        let pts: Vec<_> = demux(&mut d, &bytes, chunk)
            .iter()
            .map(|s| s.pts_90k / 90)
            .collect();
        assert_eq!(pts, [12, 13], "chunk {chunk}");
    }
}

#[test]
fn vints_decode_with_and_without_their_marker() {
    assert_eq!(vint(&[0x81], false), Some((Some(1), 1)));
    assert_eq!(vint(&[0x40, 0x02], false), Some((Some(2), 2)));
    assert_eq!(vint(&[0xff], false), Some((None, 1)));
    assert_eq!(
        vint(&[0x1A, 0x45, 0xDF, 0xA3], true),
        Some((Some(0x1A45_DFA3), 4))
    );
    assert_eq!(vint(&[0x40], false), None);
    assert_eq!(parse_epoch_ms("1700000000.25"), Some(1_700_000_000_250));
    assert_eq!(parse_epoch_ms("1700000000250"), Some(1_700_000_000_250));
}
