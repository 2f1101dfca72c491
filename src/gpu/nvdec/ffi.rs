//! The slice of NVIDIA's video decoder API (`nvcuvid.h`, `cuviddec.h`) we use, as
//! `#[repr(C)]` Rust, and the library opened at run time. [`layout`] lists every
//! struct's size and the offsets we rely on, so a test can compare them with what a C
//! compiler makes of the real headers (`tests/nvdec.rs`).

#![allow(non_snake_case, non_camel_case_types)]

use std::ffi::{c_int, c_uint, c_ulong, c_ushort, c_void};

pub type CUresult = c_int;
pub type CUvideodecoder = *mut c_void;
pub type CUvideoparser = *mut c_void;

/// `cudaVideoCodec_H264`, `cudaVideoCodec_HEVC`.
pub const CODEC_H264: c_int = 4;
pub const CODEC_HEVC: c_int = 8;
/// `cudaVideoChromaFormat_420`.
pub const CHROMA_420: c_int = 1;
/// `cudaVideoSurfaceFormat_NV12`.
pub const SURFACE_NV12: c_int = 0;
/// `cudaVideoDeinterlaceMode_Weave`, `_Adaptive`.
pub const DEINTERLACE_WEAVE: c_int = 0;
pub const DEINTERLACE_ADAPTIVE: c_int = 2;
/// `cudaVideoCreate_PreferCUVID`: the dedicated video engines.
pub const CREATE_PREFER_CUVID: c_ulong = 4;
/// `CUVID_PKT_*` flags.
pub const PKT_ENDOFSTREAM: c_ulong = 0x01;
pub const PKT_TIMESTAMP: c_ulong = 0x02;
pub const PKT_ENDOFPICTURE: c_ulong = 0x08;

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameRate {
    pub numerator: c_uint,
    pub denominator: c_uint,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Rect {
    pub left: c_int,
    pub top: c_int,
    pub right: c_int,
    pub bottom: c_int,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ShortRect {
    pub left: i16,
    pub top: i16,
    pub right: i16,
    pub bottom: i16,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AspectRatio {
    pub x: c_int,
    pub y: c_int,
}

/// `video_signal_description`: the first byte packs video_format:3,
/// video_full_range_flag:1, reserved:4 (low bits first, as GCC lays them out).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalDescription {
    pub format_bits: u8,
    pub color_primaries: u8,
    pub transfer_characteristics: u8,
    pub matrix_coefficients: u8,
}

impl SignalDescription {
    /// `video_full_range_flag`.
    pub fn full_range(&self) -> bool {
        self.format_bits & 0x08 != 0
    }
}

/// `CUVIDEOFORMAT`: what the parser found in a sequence header.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDEOFORMAT {
    pub codec: c_int,
    pub frame_rate: FrameRate,
    pub progressive_sequence: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub min_num_decode_surfaces: u8,
    pub coded_width: c_uint,
    pub coded_height: c_uint,
    pub display_area: Rect,
    pub chroma_format: c_int,
    pub bitrate: c_uint,
    pub display_aspect_ratio: AspectRatio,
    pub video_signal_description: SignalDescription,
    pub seqhdr_data_length: c_uint,
}

/// `CUVIDSOURCEDATAPACKET`: one packet of bitstream for the parser.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDSOURCEDATAPACKET {
    pub flags: c_ulong,
    pub payload_size: c_ulong,
    pub payload: *const u8,
    pub timestamp: i64,
}

/// `CUVIDPARSERDISPINFO`: a picture ready for display.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDPARSERDISPINFO {
    pub picture_index: c_int,
    pub progressive_frame: c_int,
    pub top_field_first: c_int,
    pub repeat_first_field: c_int,
    pub timestamp: i64,
}

pub type SequenceCallback = unsafe extern "C" fn(*mut c_void, *mut CUVIDEOFORMAT) -> c_int;
/// The picture parameters stay opaque: they go from the parser to the decoder untouched.
pub type DecodeCallback = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
pub type DisplayCallback = unsafe extern "C" fn(*mut c_void, *mut CUVIDPARSERDISPINFO) -> c_int;

/// `CUVIDPARSERPARAMS`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPARSERPARAMS {
    pub CodecType: c_int,
    pub ulMaxNumDecodeSurfaces: c_uint,
    pub ulClockRate: c_uint,
    pub ulErrorThreshold: c_uint,
    pub ulMaxDisplayDelay: c_uint,
    /// bAnnexb:1 (AV1 only), reserved:31.
    pub flags: c_uint,
    pub uReserved1: [c_uint; 4],
    pub pUserData: *mut c_void,
    pub pfnSequenceCallback: Option<SequenceCallback>,
    pub pfnDecodePicture: Option<DecodeCallback>,
    pub pfnDisplayPicture: Option<DisplayCallback>,
    pub pfnGetOperatingPoint: *mut c_void,
    pub pvReserved2: [*mut c_void; 6],
    pub pExtVideoInfo: *mut c_void,
}

/// `CUVIDDECODECREATEINFO`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDDECODECREATEINFO {
    pub ulWidth: c_ulong,
    pub ulHeight: c_ulong,
    pub ulNumDecodeSurfaces: c_ulong,
    pub CodecType: c_int,
    pub ChromaFormat: c_int,
    pub ulCreationFlags: c_ulong,
    pub bitDepthMinus8: c_ulong,
    pub ulIntraDecodeOnly: c_ulong,
    pub ulMaxWidth: c_ulong,
    pub ulMaxHeight: c_ulong,
    pub Reserved1: c_ulong,
    pub display_area: ShortRect,
    pub OutputFormat: c_int,
    pub DeinterlaceMode: c_int,
    pub ulTargetWidth: c_ulong,
    pub ulTargetHeight: c_ulong,
    pub ulNumOutputSurfaces: c_ulong,
    pub vidLock: *mut c_void,
    pub target_rect: ShortRect,
    pub enableHistogram: c_ulong,
    pub Reserved2: [c_ulong; 4],
}

/// `CUVIDPROCPARAMS`: how a decoded picture is mapped.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct CUVIDPROCPARAMS {
    pub progressive_frame: c_int,
    pub second_field: c_int,
    pub top_field_first: c_int,
    pub unpaired_field: c_int,
    pub reserved_flags: c_uint,
    pub reserved_zero: c_uint,
    pub raw_input_dptr: u64,
    pub raw_input_pitch: c_uint,
    pub raw_input_format: c_uint,
    pub raw_output_dptr: u64,
    pub raw_output_pitch: c_uint,
    pub Reserved1: c_uint,
    pub output_stream: *mut c_void,
    pub Reserved: [c_uint; 46],
    pub histogram_dptr: *mut u64,
    pub Reserved2: [*mut c_void; 1],
}

/// `CUVIDDECODECAPS`: what the GPU's decoders can do for a codec.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct CUVIDDECODECAPS {
    pub eCodecType: c_int,
    pub eChromaFormat: c_int,
    pub nBitDepthMinus8: c_uint,
    pub reserved1: [c_uint; 3],
    pub bIsSupported: u8,
    pub nNumNVDECs: u8,
    pub nOutputFormatMask: c_ushort,
    pub nMaxWidth: c_uint,
    pub nMaxHeight: c_uint,
    pub nMaxMBCount: c_uint,
    pub nMinWidth: c_ushort,
    pub nMinHeight: c_ushort,
    pub bIsHistogramSupported: u8,
    pub nCounterBitDepth: u8,
    pub nMaxHistogramBins: c_ushort,
    pub reserved3: [c_uint; 10],
}

/// The decoder library's functions.
pub struct Api {
    _lib: libloading::Library,
    pub get_decoder_caps: unsafe extern "C" fn(*mut CUVIDDECODECAPS) -> CUresult,
    pub create_decoder:
        unsafe extern "C" fn(*mut CUvideodecoder, *mut CUVIDDECODECREATEINFO) -> CUresult,
    pub destroy_decoder: unsafe extern "C" fn(CUvideodecoder) -> CUresult,
    pub decode_picture: unsafe extern "C" fn(CUvideodecoder, *mut c_void) -> CUresult,
    pub map_frame: unsafe extern "C" fn(
        CUvideodecoder,
        c_int,
        *mut u64,
        *mut c_uint,
        *mut CUVIDPROCPARAMS,
    ) -> CUresult,
    pub unmap_frame: unsafe extern "C" fn(CUvideodecoder, u64) -> CUresult,
    pub create_parser: unsafe extern "C" fn(*mut CUvideoparser, *mut CUVIDPARSERPARAMS) -> CUresult,
    pub parse_data: unsafe extern "C" fn(CUvideoparser, *mut CUVIDSOURCEDATAPACKET) -> CUresult,
    pub destroy_parser: unsafe extern "C" fn(CUvideoparser) -> CUresult,
}

impl Api {
    /// Opens `name` (`libnvcuvid.so.1`, shipped with the NVIDIA driver).
    pub fn load(name: &str) -> Result<Self, String> {
        // SAFETY: the NVIDIA decoder library is designed to be loaded into any process;
        // nothing is called until every symbol resolves.
        let lib = unsafe { libloading::Library::new(name) }.map_err(|e| format!("{name}: {e}"))?;
        macro_rules! sym {
            ($name:literal) => {{
                // SAFETY: each symbol is the decoder API function of the field's C type.
                let s = unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                    .map_err(|e| format!("{name} lacks {}: {e}", $name))?;
                *s
            }};
        }
        Ok(Self {
            get_decoder_caps: sym!("cuvidGetDecoderCaps"),
            create_decoder: sym!("cuvidCreateDecoder"),
            destroy_decoder: sym!("cuvidDestroyDecoder"),
            decode_picture: sym!("cuvidDecodePicture"),
            map_frame: sym!("cuvidMapVideoFrame64"),
            unmap_frame: sym!("cuvidUnmapVideoFrame64"),
            create_parser: sym!("cuvidCreateVideoParser"),
            parse_data: sym!("cuvidParseVideoData"),
            destroy_parser: sym!("cuvidDestroyVideoParser"),
            _lib: lib,
        })
    }
}

/// Every struct's size and the field offsets we rely on, one `NAME VALUE` per line,
/// in the form `tests/nvdec.rs`'s C program prints from the real headers.
pub fn layout() -> String {
    use std::mem::{offset_of, size_of};
    let mut out = String::new();
    let mut line = |name: &str, value: usize| out.push_str(&format!("{name} {value}\n"));
    line("CUVIDEOFORMAT", size_of::<CUVIDEOFORMAT>());
    line(
        "CUVIDEOFORMAT.coded_width",
        offset_of!(CUVIDEOFORMAT, coded_width),
    );
    line(
        "CUVIDEOFORMAT.display_area",
        offset_of!(CUVIDEOFORMAT, display_area),
    );
    line(
        "CUVIDEOFORMAT.chroma_format",
        offset_of!(CUVIDEOFORMAT, chroma_format),
    );
    line(
        "CUVIDEOFORMAT.video_signal_description",
        offset_of!(CUVIDEOFORMAT, video_signal_description),
    );
    line("CUVIDSOURCEDATAPACKET", size_of::<CUVIDSOURCEDATAPACKET>());
    line(
        "CUVIDSOURCEDATAPACKET.payload",
        offset_of!(CUVIDSOURCEDATAPACKET, payload),
    );
    line(
        "CUVIDSOURCEDATAPACKET.timestamp",
        offset_of!(CUVIDSOURCEDATAPACKET, timestamp),
    );
    line("CUVIDPARSERDISPINFO", size_of::<CUVIDPARSERDISPINFO>());
    line(
        "CUVIDPARSERDISPINFO.timestamp",
        offset_of!(CUVIDPARSERDISPINFO, timestamp),
    );
    line("CUVIDPARSERPARAMS", size_of::<CUVIDPARSERPARAMS>());
    line(
        "CUVIDPARSERPARAMS.ulMaxDisplayDelay",
        offset_of!(CUVIDPARSERPARAMS, ulMaxDisplayDelay),
    );
    line(
        "CUVIDPARSERPARAMS.pUserData",
        offset_of!(CUVIDPARSERPARAMS, pUserData),
    );
    line(
        "CUVIDPARSERPARAMS.pfnDisplayPicture",
        offset_of!(CUVIDPARSERPARAMS, pfnDisplayPicture),
    );
    line(
        "CUVIDPARSERPARAMS.pExtVideoInfo",
        offset_of!(CUVIDPARSERPARAMS, pExtVideoInfo),
    );
    line("CUVIDDECODECREATEINFO", size_of::<CUVIDDECODECREATEINFO>());
    line(
        "CUVIDDECODECREATEINFO.CodecType",
        offset_of!(CUVIDDECODECREATEINFO, CodecType),
    );
    line(
        "CUVIDDECODECREATEINFO.display_area",
        offset_of!(CUVIDDECODECREATEINFO, display_area),
    );
    line(
        "CUVIDDECODECREATEINFO.OutputFormat",
        offset_of!(CUVIDDECODECREATEINFO, OutputFormat),
    );
    line(
        "CUVIDDECODECREATEINFO.vidLock",
        offset_of!(CUVIDDECODECREATEINFO, vidLock),
    );
    line(
        "CUVIDDECODECREATEINFO.target_rect",
        offset_of!(CUVIDDECODECREATEINFO, target_rect),
    );
    line(
        "CUVIDDECODECREATEINFO.enableHistogram",
        offset_of!(CUVIDDECODECREATEINFO, enableHistogram),
    );
    line("CUVIDPROCPARAMS", size_of::<CUVIDPROCPARAMS>());
    line(
        "CUVIDPROCPARAMS.raw_input_dptr",
        offset_of!(CUVIDPROCPARAMS, raw_input_dptr),
    );
    line(
        "CUVIDPROCPARAMS.output_stream",
        offset_of!(CUVIDPROCPARAMS, output_stream),
    );
    line(
        "CUVIDPROCPARAMS.histogram_dptr",
        offset_of!(CUVIDPROCPARAMS, histogram_dptr),
    );
    line("CUVIDDECODECAPS", size_of::<CUVIDDECODECAPS>());
    line(
        "CUVIDDECODECAPS.bIsSupported",
        offset_of!(CUVIDDECODECAPS, bIsSupported),
    );
    line(
        "CUVIDDECODECAPS.nMaxWidth",
        offset_of!(CUVIDDECODECAPS, nMaxWidth),
    );
    line(
        "CUVIDDECODECAPS.nMinWidth",
        offset_of!(CUVIDDECODECAPS, nMinWidth),
    );
    line(
        "CUVIDDECODECAPS.reserved3",
        offset_of!(CUVIDDECODECAPS, reserved3),
    );
    use crate::gpu::driver::Memcpy2d;
    line("CUDA_MEMCPY2D", size_of::<Memcpy2d>());
    line("CUDA_MEMCPY2D.srcDevice", offset_of!(Memcpy2d, src_device));
    line("CUDA_MEMCPY2D.dstHost", offset_of!(Memcpy2d, dst_host));
    line("CUDA_MEMCPY2D.Height", offset_of!(Memcpy2d, height));
    out
}
