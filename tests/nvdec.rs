//! NVDEC without a GPU: our binding's structs match NVIDIA's headers byte for byte (a
//! C compiler reads the headers Debian's libffmpeg-nvenc-dev ships, installed by
//! `scripts/setup.sh --test`), the Annex B the parser is fed decodes to exactly the
//! pictures of the original stream (checked by libavcodec), and the server without
//! NVDEC decodes on the CPU under `auto` and refuses `nvdec` with exit 2.
//!
//! NVDEC's own test (every picture, on the host and kept on the device, equals
//! libavcodec's) runs on a GPU when there is one, and everywhere on fakes of the
//! driver and of libnvcuvid (`tests/support/fake_*.cpp`), which drive the whole
//! binding: callbacks, decoder creation, surface mapping and the copies out.
//! `bench/gpu-check.sh` decodes on a real GPU.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{binary, ffmpeg, skip, temp_dir};
use kvs_infer::decode::annexb::AnnexB;
use kvs_infer::decode::ffmpeg::FfmpegDecoder;
use kvs_infer::decode::nvdec::NvdecFrames;
use kvs_infer::decode::{Decoder, Frame, FrameSelector};
use kvs_infer::ingest::file::FileSource;
use kvs_infer::ingest::FrameSource;

const HEADERS: &str = "/usr/include/ffnvcodec";

const LAYOUT_C: &str = r#"
#include <stddef.h>
#include <stdio.h>
#include <ffnvcodec/dynlink_cuda.h>
#include <ffnvcodec/dynlink_cuviddec.h>
#include <ffnvcodec/dynlink_nvcuvid.h>
#define S(T) printf(#T " %zu\n", sizeof(T));
#define O(T, f) printf(#T "." #f " %zu\n", offsetof(T, f));
int main(void) {
    S(CUVIDEOFORMAT) O(CUVIDEOFORMAT, coded_width) O(CUVIDEOFORMAT, display_area)
    O(CUVIDEOFORMAT, chroma_format) O(CUVIDEOFORMAT, video_signal_description)
    S(CUVIDSOURCEDATAPACKET) O(CUVIDSOURCEDATAPACKET, payload) O(CUVIDSOURCEDATAPACKET, timestamp)
    S(CUVIDPARSERDISPINFO) O(CUVIDPARSERDISPINFO, timestamp)
    S(CUVIDPARSERPARAMS) O(CUVIDPARSERPARAMS, ulMaxDisplayDelay) O(CUVIDPARSERPARAMS, pUserData)
    O(CUVIDPARSERPARAMS, pfnDisplayPicture) O(CUVIDPARSERPARAMS, pExtVideoInfo)
    S(CUVIDDECODECREATEINFO) O(CUVIDDECODECREATEINFO, CodecType) O(CUVIDDECODECREATEINFO, display_area)
    O(CUVIDDECODECREATEINFO, OutputFormat) O(CUVIDDECODECREATEINFO, vidLock)
    O(CUVIDDECODECREATEINFO, target_rect) O(CUVIDDECODECREATEINFO, enableHistogram)
    S(CUVIDPROCPARAMS) O(CUVIDPROCPARAMS, raw_input_dptr) O(CUVIDPROCPARAMS, output_stream)
    O(CUVIDPROCPARAMS, histogram_dptr)
    S(CUVIDDECODECAPS) O(CUVIDDECODECAPS, bIsSupported) O(CUVIDDECODECAPS, nMaxWidth)
    O(CUVIDDECODECAPS, nMinWidth) O(CUVIDDECODECAPS, reserved3)
    S(CUDA_MEMCPY2D) O(CUDA_MEMCPY2D, srcDevice) O(CUDA_MEMCPY2D, dstHost) O(CUDA_MEMCPY2D, Height)
    /* The enum values the binding hard-codes. */
    printf("values %d %d %d %d %d %d %lu %d %d %d\n", cudaVideoCodec_H264, cudaVideoCodec_HEVC,
        cudaVideoChromaFormat_420, cudaVideoSurfaceFormat_NV12, cudaVideoDeinterlaceMode_Weave,
        cudaVideoDeinterlaceMode_Adaptive, (unsigned long)cudaVideoCreate_PreferCUVID,
        CUVID_PKT_ENDOFSTREAM, CUVID_PKT_TIMESTAMP, CUVID_PKT_ENDOFPICTURE);
    return 0;
}
"#;

#[test]
fn the_binding_matches_nvidias_headers_byte_for_byte() {
    if !Path::new(HEADERS).join("dynlink_nvcuvid.h").is_file() {
        skip("no NVDEC headers in /usr/include/ffnvcodec (scripts/setup.sh --test installs libffmpeg-nvenc-dev)");
        return;
    }
    let dir = temp_dir("nvdec-layout");
    let source = dir.join("layout.c");
    std::fs::write(&source, LAYOUT_C).unwrap();
    let exe = dir.join("layout");
    let cc = Command::new("cc")
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("a C compiler (cc) is needed to read the headers");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let c = String::from_utf8(out.stdout).unwrap();
    use kvs_infer::gpu::nvdec::ffi;
    let values = format!(
        "values {} {} {} {} {} {} {} {} {} {}\n",
        ffi::CODEC_H264,
        ffi::CODEC_HEVC,
        ffi::CHROMA_420,
        ffi::SURFACE_NV12,
        ffi::DEINTERLACE_WEAVE,
        ffi::DEINTERLACE_ADAPTIVE,
        ffi::CREATE_PREFER_CUVID,
        ffi::PKT_ENDOFSTREAM,
        ffi::PKT_TIMESTAMP,
        ffi::PKT_ENDOFPICTURE
    );
    let rust = ffi::layout() + &values;
    for (c_line, rust_line) in c.lines().zip(rust.lines()) {
        assert_eq!(
            c_line, rust_line,
            "C says {c_line}, the binding {rust_line}"
        );
    }
    assert_eq!(c.lines().count(), rust.lines().count());
}

/// Every picture of `path`, decoded by ffmpeg, as one MD5 per frame.
fn frame_md5s(input: &[&str]) -> Vec<String> {
    let mut args = vec!["-v", "error"];
    args.extend_from_slice(input);
    args.extend_from_slice(&["-map", "0:v:0", "-f", "framemd5", "-"]);
    String::from_utf8(ffmpeg(&args))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_owned()))
        .collect()
}

fn clip(dir: &Path, name: &str, codec: &str) -> PathBuf {
    let path = dir.join(name);
    common::test_clip(&path, codec, 3, &["-g", "25", "-bf", "2"]);
    path
}

#[test]
fn annex_b_for_the_parser_decodes_to_the_same_pictures_as_the_container() {
    let dir = temp_dir("nvdec-annexb");
    let mut clips = vec![
        (clip(&dir, "h264.mp4", "libx264"), "h264"),
        (clip(&dir, "h265.mp4", "libx265"), "hevc"),
    ];
    match common::fixture("video/person-motorcycle-720p.mp4") {
        Some(demo) => clips.push((demo, "h264")),
        None => skip("no demo clip (scripts/fetch-assets.sh); generated clips only"),
    }
    for (path, raw_format) in clips {
        let mut source = FileSource::open(&path, false, false).unwrap();
        let info = source.info().clone();
        assert!(!info.extradata.is_empty(), "MP4 carries an avcC/hvcC");
        let annexb = AnnexB::new(info.codec, &info.extradata).unwrap();
        let mut stream = Vec::new();
        let mut units = 0;
        while let Some(unit) = futures::executor::block_on(source.next_access_unit()).unwrap() {
            stream.extend(annexb.convert(&unit.data, unit.keyframe));
            units += 1;
        }
        let raw = dir.join(format!("{units}.{raw_format}"));
        std::fs::write(&raw, &stream).unwrap();
        let original = frame_md5s(&["-i", path.to_str().unwrap()]);
        let converted = frame_md5s(&["-f", raw_format, "-i", raw.to_str().unwrap()]);
        assert_eq!(original.len(), units, "{}", path.display());
        assert_eq!(original, converted, "{}: pictures differ", path.display());
    }
}

fn config(dir: &Path, backend: &str) -> String {
    let path = dir.join(format!("{backend}.toml"));
    std::fs::write(
        &path,
        format!(
            "[engine]\nbackend = \"cpu\"\n[decode]\nbackend = \"{backend}\"\n[publishers.local]\ndir = \"out\"\n[cameras.s.synthetic]\nfps = 2\n[[cameras.s.detectors]]\ntype = \"yolo\"\nparams = {{ model_path = \"no-such-model.onnx\" }}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn without_nvdec_auto_decodes_on_the_cpu_and_nvdec_is_a_start_up_error() {
    if kvs_infer::decode::nvdec_missing(0).is_none() {
        skip("this machine has NVDEC; the fallback is not observable here");
        return;
    }
    assert!(kvs_infer::gpu::nvdec::api().is_err() || !kvs_infer::gpu::probe().is_available());
    let dir = temp_dir("nvdec-fallback");
    let model = common::fixture("models/yolov8n-coco.onnx");
    // auto: one log line says the CPU decodes and why. With a model the server starts;
    // without, start-up stops at the model, after the decoder was settled.
    let cfg = config(&dir, "auto");
    if let Some(model) = &model {
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("no-such-model.onnx", model.to_str().unwrap());
        std::fs::write(&cfg, text).unwrap();
    }
    let mut server = binary()
        .args(["--config", &cfg, "--http", "127.0.0.1:0"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = server.stdout.take().unwrap();
    let line = std::io::BufRead::lines(std::io::BufReader::new(stdout))
        .map_while(Result::ok)
        .find(|l| l.contains("Decoding on the CPU"));
    let _ = server.kill();
    let _ = server.wait();
    let line = line.expect("a decoder line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["decoder"], "cpu");
    assert!(!v["reason"].as_str().unwrap().is_empty(), "{line}");

    let out = binary()
        .args(["--config", &config(&dir, "nvdec"), "--http", "127.0.0.1:0"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("decode.backend = \"nvdec\" cannot run"),
        "{stderr}"
    );
}

/// Every picture of `path`, decoded by `decoder` and flushed.
fn decode_all(
    path: &Path,
    decoder: impl FnOnce(&kvs_infer::ingest::StreamInfo) -> Box<dyn Decoder>,
) -> Vec<Frame> {
    let mut source = FileSource::open(path, false, false).unwrap();
    let mut decoder = decoder(source.info());
    let mut frames = Vec::new();
    while let Some(unit) = futures::executor::block_on(source.next_access_unit()).unwrap() {
        frames.extend(decoder.decode(&unit).unwrap());
    }
    frames.extend(decoder.flush().unwrap());
    frames
}

const NVDEC_TESTS: [&str; 1] =
    ["on_nvdec_every_picture_equals_libavcodecs_on_the_host_and_on_the_device"];

#[test]
fn on_nvdec_every_picture_equals_libavcodecs_on_the_host_and_on_the_device() {
    if let Some(why) = kvs_infer::decode::nvdec_missing(0) {
        skip(&format!(
            "no NVDEC ({why}): run here on fakes instead (nvdec_runs_whole_on_fake…)"
        ));
        return;
    }
    let dir = temp_dir("nvdec-pictures");
    for (name, codec) in [("h264.mp4", "libx264"), ("h265.mp4", "libx265")] {
        let path = clip(&dir, name, codec);
        let cpu = decode_all(&path, |info| {
            Box::new(FfmpegDecoder::new(info, FrameSelector::new(0.0), 1).unwrap())
        });
        assert_eq!(cpu.len(), 75, "{name}");
        for on_device in [false, true] {
            let gpu = decode_all(&path, |info| {
                let nvdec = NvdecFrames::new(info, FrameSelector::new(0.0), 0, 4).unwrap();
                Box::new(if on_device {
                    nvdec.on_device(0, 4).unwrap()
                } else {
                    nvdec
                })
            });
            assert_eq!(gpu.len(), cpu.len(), "{name}, on the device: {on_device}");
            for (k, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
                let what = format!("{name} picture {k}, on the device: {on_device}");
                assert_eq!(g.device.is_some(), on_device, "{what}");
                assert_eq!(
                    (g.pts_90k, g.width, g.height, g.matrix),
                    (c.pts_90k, c.width, c.height, c.matrix),
                    "{what}"
                );
                assert!(g.planes() == c.planes(), "{what}: pictures differ");
            }
        }
    }
}

#[test]
fn nvdec_runs_whole_on_fake_drivers_that_decode_with_libavcodec() {
    if std::env::var_os("KVS_INFER_NVCUVID").is_some() {
        return; // A child run on some decoder already.
    }
    let fakes = match common::fakes() {
        Ok(fakes) => fakes,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    common::run_tests_in_child(
        &NVDEC_TESTS,
        &[
            ("KVS_INFER_CUDA_DRIVER", &fakes.cuda),
            ("KVS_INFER_NVCUVID", &fakes.nvcuvid),
        ],
    );
}
