//! NVDEC: H.264 and H.265 decoded by the GPU's video engines into device memory,
//! through a small binding to `libnvcuvid.so.1` opened at run time ([`ffi`]).
//!
//! [`NvDecoder`] owns one stream's parser and decoder. Access units go in (rewritten
//! as Annex B, which the parser reads); pictures come out in display order as
//! [`Mapped`] NV12 surfaces in device memory, which a caller hands straight to the
//! preprocessing kernel (no host copy) or, for the CPU path and checks, copies out
//! ([`Mapped::download`]), or kept in device memory beyond the mapping
//! ([`Mapped::keep`]). Each decoder sizes its own surface pool: the codec's
//! minimum for the stream plus `extra_surfaces`. A host without the library or a GPU
//! gets [`NvdecError::Unavailable`], and callers decode on the CPU instead.

pub mod ffi;

use std::collections::VecDeque;
use std::ffi::{c_int, c_void};
use std::sync::Arc;

use ffi::*;

use super::devframe::{download_nv12, FramePool};
use super::driver::{Context, DriverError};
use crate::decode::annexb::AnnexB;
use crate::decode::{ColorMatrix, Frame};
use crate::ingest::{Codec, StreamInfo};

/// Why NVDEC cannot decode.
#[derive(Debug, thiserror::Error)]
pub enum NvdecError {
    /// No decoder library, no GPU, or the GPU cannot decode this stream.
    #[error("NVDEC unavailable: {0}")]
    Unavailable(String),
    /// A decoder call failed.
    #[error("NVDEC {call} failed: CUresult {code}")]
    Call {
        /// The function.
        call: &'static str,
        /// Its CUresult.
        code: c_int,
    },
    /// The stream is one we do not decode on the GPU (10-bit, 4:2:2, …).
    #[error("NVDEC: {0}")]
    Stream(String),
    /// The driver failed around the decoder (context, copies).
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// The decoder library, opened once per process.
pub fn api() -> Result<Arc<Api>, NvdecError> {
    static API: std::sync::OnceLock<Result<Arc<Api>, String>> = std::sync::OnceLock::new();
    API.get_or_init(|| {
        let name = std::env::var("KVS_INFER_NVCUVID").unwrap_or_else(|_| "libnvcuvid.so.1".into());
        Api::load(&name).map(Arc::new)
    })
    .clone()
    .map_err(NvdecError::Unavailable)
}

fn check(call: &'static str, code: CUresult) -> Result<(), NvdecError> {
    if code == 0 {
        Ok(())
    } else {
        Err(NvdecError::Call { call, code })
    }
}

/// What a sequence header set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequence {
    /// Displayed width and height (the coded size less cropping).
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Rows in the decoder's output surface (the UV plane starts this many pitches in).
    pub surface_height: u32,
    /// Surfaces in this decoder's pool.
    pub surfaces: u32,
    /// YUV → RGB conversion the stream signals.
    pub matrix: ColorMatrix,
}

/// Callback state, boxed so its address is stable for the parser's user-data pointer.
struct State {
    api: Arc<Api>,
    codec: c_int,
    decoder: CUvideodecoder,
    sequence: Option<Sequence>,
    extra_surfaces: u32,
    /// Pictures ready to display: (surface index, pts in 90 kHz, progressive, top first).
    ready: VecDeque<(c_int, i64, bool, bool)>,
    error: Option<NvdecError>,
}

impl State {
    fn on_sequence(&mut self, format: &CUVIDEOFORMAT) -> Result<c_int, NvdecError> {
        if format.chroma_format != CHROMA_420 || format.bit_depth_luma_minus8 != 0 {
            return Err(NvdecError::Stream(format!(
                "only 8-bit 4:2:0 is decoded on the GPU (chroma format {}, bit depth {})",
                format.chroma_format,
                8 + format.bit_depth_luma_minus8
            )));
        }
        let area = format.display_area;
        let width = (area.right - area.left).max(2) as u32 & !1;
        let height = (area.bottom - area.top).max(2) as u32 & !1;
        let surfaces = u32::from(format.min_num_decode_surfaces).max(1) + self.extra_surfaces;
        if let Some(seq) = self.sequence {
            if seq.width == width && seq.height == height && seq.surfaces >= surfaces {
                return Ok(seq.surfaces as c_int);
            }
        }
        self.destroy_decoder();
        let mut info = CUVIDDECODECREATEINFO {
            ulWidth: format.coded_width.into(),
            ulHeight: format.coded_height.into(),
            ulNumDecodeSurfaces: surfaces.into(),
            CodecType: self.codec,
            ChromaFormat: CHROMA_420,
            ulCreationFlags: CREATE_PREFER_CUVID,
            bitDepthMinus8: 0,
            ulIntraDecodeOnly: 0,
            ulMaxWidth: format.coded_width.into(),
            ulMaxHeight: format.coded_height.into(),
            Reserved1: 0,
            display_area: ShortRect {
                left: area.left as i16,
                top: area.top as i16,
                right: area.right as i16,
                bottom: area.bottom as i16,
            },
            OutputFormat: SURFACE_NV12,
            DeinterlaceMode: if format.progressive_sequence != 0 {
                DEINTERLACE_WEAVE
            } else {
                DEINTERLACE_ADAPTIVE
            },
            ulTargetWidth: width.into(),
            ulTargetHeight: height.into(),
            ulNumOutputSurfaces: 2,
            vidLock: std::ptr::null_mut(),
            target_rect: ShortRect::default(),
            enableHistogram: 0,
            Reserved2: [0; 4],
        };
        let mut decoder = std::ptr::null_mut();
        // SAFETY: a fully initialised create-info and a valid out-pointer; the CUDA
        // context is current (NvDecoder binds it before every parse).
        check("cuvidCreateDecoder", unsafe {
            (self.api.create_decoder)(&mut decoder, &mut info)
        })?;
        self.decoder = decoder;
        let signal = format.video_signal_description;
        self.sequence = Some(Sequence {
            width,
            height,
            surface_height: height,
            surfaces,
            matrix: match (signal.matrix_coefficients, signal.full_range()) {
                (_, true) => ColorMatrix::Bt601Full,
                (1, false) => ColorMatrix::Bt709,
                _ => ColorMatrix::Bt601,
            },
        });
        Ok(surfaces as c_int)
    }

    fn destroy_decoder(&mut self) {
        if !self.decoder.is_null() {
            // SAFETY: a decoder we created and have not destroyed.
            unsafe { (self.api.destroy_decoder)(self.decoder) };
            self.decoder = std::ptr::null_mut();
        }
    }
}

unsafe extern "C" fn on_sequence(user: *mut c_void, format: *mut CUVIDEOFORMAT) -> c_int {
    // SAFETY: `user` is the boxed State the parser was created with; `format` is valid
    // for the call.
    let (state, format) = unsafe { (&mut *user.cast::<State>(), &*format) };
    match state.on_sequence(format) {
        Ok(n) => n,
        Err(e) => {
            state.error = Some(e);
            0
        }
    }
}

unsafe extern "C" fn on_decode(user: *mut c_void, pic: *mut c_void) -> c_int {
    // SAFETY: as in `on_sequence`; `pic` goes to the decoder untouched.
    let state = unsafe { &mut *user.cast::<State>() };
    if state.decoder.is_null() {
        state.error = Some(NvdecError::Stream(
            "a picture before any sequence header".into(),
        ));
        return 0;
    }
    // SAFETY: the parser's picture parameters for our decoder.
    match check("cuvidDecodePicture", unsafe {
        (state.api.decode_picture)(state.decoder, pic)
    }) {
        Ok(()) => 1,
        Err(e) => {
            state.error = Some(e);
            0
        }
    }
}

unsafe extern "C" fn on_display(user: *mut c_void, info: *mut CUVIDPARSERDISPINFO) -> c_int {
    // SAFETY: as in `on_sequence`; a null `info` marks the end of the stream.
    let state = unsafe { &mut *user.cast::<State>() };
    if let Some(info) = unsafe { info.as_ref() } {
        state.ready.push_back((
            info.picture_index,
            info.timestamp,
            info.progressive_frame != 0,
            info.top_field_first != 0,
        ));
    }
    1
}

/// One decoded picture, mapped: NV12 in device memory until it is dropped.
pub struct Mapped<'d> {
    decoder: &'d NvDecoder,
    dptr: u64,
    /// Bytes between rows of both planes.
    pub pitch: usize,
    /// Displayed size.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Presentation time in 90 kHz units.
    pub pts_90k: i64,
    /// YUV → RGB conversion.
    pub matrix: ColorMatrix,
    surface_height: u32,
}

impl Mapped<'_> {
    /// The luma plane's device address.
    pub fn y_ptr(&self) -> u64 {
        self.dptr
    }

    /// Where the preprocessing kernel finds the mapped picture.
    pub fn planes(&self) -> crate::gpu::batch::DevicePlanes {
        crate::gpu::batch::DevicePlanes::nv12(
            (self.y_ptr(), self.uv_ptr(), self.pitch),
            self.width,
            self.height,
            self.matrix,
        )
    }

    /// The interleaved UV plane's device address.
    pub fn uv_ptr(&self) -> u64 {
        self.dptr + (self.pitch * self.surface_height as usize) as u64
    }

    /// Copies the picture to the host as an I420 [`Frame`] (for the CPU path and for
    /// checks; the GPU path reads the surface where it is).
    pub fn download(
        &self,
        received_at: std::time::Instant,
        wall_ms: i64,
    ) -> Result<Frame, NvdecError> {
        let at = (self.y_ptr(), self.uv_ptr(), self.pitch);
        let planes = download_nv12(&self.decoder.ctx, at, self.width, self.height)?;
        Ok(Frame::from_planes(
            self.width,
            self.height,
            self.pts_90k,
            received_at,
            wall_ms,
            self.matrix,
            planes,
        ))
    }
}

impl Mapped<'_> {
    /// Keeps the picture on the GPU: copied device-to-device into a buffer of `pool`,
    /// as a [`Frame`] whose host planes are made only if something asks for them.
    pub fn keep(
        &self,
        pool: &FramePool,
        received_at: std::time::Instant,
        wall_ms: i64,
    ) -> Result<Frame, NvdecError> {
        let image = pool.copy_nv12(
            (self.y_ptr(), self.uv_ptr(), self.pitch),
            self.width,
            self.height,
            self.matrix,
        )?;
        Ok(Frame {
            width: self.width,
            height: self.height,
            pts_90k: self.pts_90k,
            received_at,
            wall_ms,
            matrix: self.matrix,
            host: std::sync::OnceLock::new(),
            device: Some(Arc::new(image)),
        })
    }
}

impl Drop for Mapped<'_> {
    fn drop(&mut self) {
        // SAFETY: a frame mapped from this decoder and not yet unmapped.
        unsafe { (self.decoder.state.api.unmap_frame)(self.decoder.state.decoder, self.dptr) };
    }
}

/// One stream's NVDEC parser and decoder on one GPU.
pub struct NvDecoder {
    ctx: Arc<Context>,
    parser: CUvideoparser,
    state: Box<State>,
    annexb: AnnexB,
    buf: Vec<u8>,
}

// SAFETY: the parser and decoder are used from one thread at a time (the camera's),
// with the context bound on that thread before every call.
unsafe impl Send for NvDecoder {}

impl NvDecoder {
    /// A decoder for `info`'s stream on `ctx`'s GPU, with `extra_surfaces` beyond the
    /// codec's minimum in its pool.
    pub fn new(
        ctx: Arc<Context>,
        info: &StreamInfo,
        extra_surfaces: u32,
    ) -> Result<Self, NvdecError> {
        let api = api()?;
        let codec = match info.codec {
            Codec::H264 => CODEC_H264,
            Codec::H265 => CODEC_HEVC,
        };
        let mut caps = CUVIDDECODECAPS {
            eCodecType: codec,
            eChromaFormat: CHROMA_420,
            ..Default::default()
        };
        ctx.bind()?;
        // SAFETY: an initialised caps struct; the context is current.
        check("cuvidGetDecoderCaps", unsafe {
            (api.get_decoder_caps)(&mut caps)
        })?;
        if caps.bIsSupported == 0 {
            return Err(NvdecError::Unavailable(format!(
                "this GPU cannot decode {:?} 8-bit 4:2:0",
                info.codec
            )));
        }
        let annexb = AnnexB::new(info.codec, &info.extradata)
            .map_err(|e| NvdecError::Stream(e.to_string()))?;
        let mut state = Box::new(State {
            api: api.clone(),
            codec,
            decoder: std::ptr::null_mut(),
            sequence: None,
            extra_surfaces,
            ready: VecDeque::new(),
            error: None,
        });
        let mut params = CUVIDPARSERPARAMS {
            CodecType: codec,
            ulMaxNumDecodeSurfaces: 1,
            ulClockRate: 90_000,
            ulErrorThreshold: 0,
            // No reordering delay beyond what the codec needs: live video wants the
            // newest picture now.
            ulMaxDisplayDelay: 0,
            flags: 0,
            uReserved1: [0; 4],
            pUserData: (&mut *state as *mut State).cast(),
            pfnSequenceCallback: Some(on_sequence),
            pfnDecodePicture: Some(on_decode),
            pfnDisplayPicture: Some(on_display),
            pfnGetOperatingPoint: std::ptr::null_mut(),
            pvReserved2: [std::ptr::null_mut(); 6],
            pExtVideoInfo: std::ptr::null_mut(),
        };
        let mut parser = std::ptr::null_mut();
        // SAFETY: initialised params whose user data (the boxed state) outlives the
        // parser: both are dropped together, parser first.
        check("cuvidCreateVideoParser", unsafe {
            (api.create_parser)(&mut parser, &mut params)
        })?;
        Ok(Self {
            ctx,
            parser,
            state,
            annexb,
            buf: Vec::new(),
        })
    }

    /// The stream's sequence, once its first header was parsed.
    pub fn sequence(&self) -> Option<Sequence> {
        self.state.sequence
    }

    /// Feeds one access unit; the pictures it completes wait in [`NvDecoder::next_picture`].
    pub fn push(&mut self, data: &[u8], keyframe: bool, pts_90k: i64) -> Result<(), NvdecError> {
        self.annexb.convert_into(data, keyframe, &mut self.buf);
        let mut packet = CUVIDSOURCEDATAPACKET {
            flags: PKT_TIMESTAMP | PKT_ENDOFPICTURE,
            payload_size: self.buf.len() as _,
            payload: self.buf.as_ptr(),
            timestamp: pts_90k,
        };
        self.parse(&mut packet)
    }

    /// Tells the parser the stream ended, so it displays what it holds back.
    pub fn finish(&mut self) -> Result<(), NvdecError> {
        let mut packet = CUVIDSOURCEDATAPACKET {
            flags: PKT_ENDOFSTREAM,
            payload_size: 0,
            payload: std::ptr::null(),
            timestamp: 0,
        };
        self.parse(&mut packet)
    }

    fn parse(&mut self, packet: &mut CUVIDSOURCEDATAPACKET) -> Result<(), NvdecError> {
        self.ctx.bind()?;
        // SAFETY: a live parser; the payload outlives the call; callbacks run inside it
        // on this thread with the boxed state.
        let rc = unsafe { (self.state.api.parse_data)(self.parser, packet) };
        if let Some(e) = self.state.error.take() {
            return Err(e);
        }
        check("cuvidParseVideoData", rc)
    }

    /// The next picture in display order, mapped, or `None` until more is pushed.
    pub fn next_picture(&mut self) -> Result<Option<Mapped<'_>>, NvdecError> {
        let Some((index, pts_90k, progressive, top_first)) = self.state.ready.pop_front() else {
            return Ok(None);
        };
        let seq = self.state.sequence.ok_or_else(|| {
            NvdecError::Stream("a picture to display before any sequence header".into())
        })?;
        // SAFETY: plain-old-data; zero is every field's "unset".
        let mut proc: CUVIDPROCPARAMS = unsafe { std::mem::zeroed() };
        proc.progressive_frame = c_int::from(progressive);
        proc.top_field_first = c_int::from(top_first);
        let (mut dptr, mut pitch) = (0u64, 0u32);
        self.ctx.bind()?;
        // SAFETY: a surface index the parser gave for our decoder; valid out-pointers.
        check("cuvidMapVideoFrame64", unsafe {
            (self.state.api.map_frame)(self.state.decoder, index, &mut dptr, &mut pitch, &mut proc)
        })?;
        Ok(Some(Mapped {
            decoder: self,
            dptr,
            pitch: pitch as usize,
            width: seq.width,
            height: seq.height,
            pts_90k,
            matrix: seq.matrix,
            surface_height: seq.surface_height,
        }))
    }
}

impl Drop for NvDecoder {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: the parser we created; then the decoder (the parser's callbacks can
        // no longer run).
        unsafe { (self.state.api.destroy_parser)(self.parser) };
        self.state.destroy_decoder();
    }
}
