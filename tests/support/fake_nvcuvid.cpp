// A fake NVDEC (libnvcuvid's parser and decoder API, as far as kvs-infer calls it),
// decoding with libavcodec into "device" surfaces in host memory, for use with the
// fake CUDA driver (fake_cuda.cpp). Loaded in place of libnvcuvid.so.1
// (KVS_INFER_NVCUVID), it drives our binding's whole path on a machine without a GPU:
// parser creation with our callbacks and user data, the sequence callback and the
// decoder it creates (surface count, sizes, output format), the decode callback
// handing our decoder each picture, the display callback with timestamps, mapping
// surfaces with their pitch (at most ulNumOutputSurfaces at once, as NVDEC allows),
// and the copies out of them.
//
// It is not NVIDIA's parser: callbacks come in display order, one picture at a time,
// which the real one need not do. Only a GPU shows that (bench/gpu-check.sh).
// Signatures and structs are NVIDIA's, from nv-codec-headers (MIT).

#include <stdlib.h>
#include <string.h>

#include <ffnvcodec/dynlink_cuda.h>
#include <ffnvcodec/dynlink_cuviddec.h>
#include <ffnvcodec/dynlink_nvcuvid.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavutil/frame.h>
#include <libavutil/pixfmt.h>
}

static const int INVALID_VALUE = 1;
static const int INVALID_HANDLE = 400;
static const int MAP_FAILED = 205;
static const int NOT_SUPPORTED = 801;
static const int UNKNOWN = 999;

struct FakeDecoder {
    unsigned int width, height;  // target (output) size
    unsigned int surfaces;
    unsigned int output_surfaces;
    size_t pitch;
    unsigned char* memory;  // surfaces back to back, NV12 at `pitch`
    unsigned int mapped;
};

struct FakeParser {
    CUVIDPARSERPARAMS params;
    AVCodecContext* codec;
    AVPacket* packet;
    AVFrame* frame;
    int sequence_seen;
    unsigned int surfaces;  // the parser's DPB size (what the sequence callback said)
    unsigned int next;
};

// The picture the parser is handing to the decode callback: cuvidDecodePicture
// writes it into the surface the callback names.
static thread_local const AVFrame* pending;

static size_t surface_bytes(const FakeDecoder* d) {
    return d->pitch * (d->height + d->height / 2);
}

extern "C" {

CUresult cuvidGetDecoderCaps(CUVIDDECODECAPS* caps) {
    bool ok = (caps->eCodecType == cudaVideoCodec_H264 || caps->eCodecType == cudaVideoCodec_HEVC) &&
              caps->eChromaFormat == cudaVideoChromaFormat_420 && caps->nBitDepthMinus8 == 0;
    caps->bIsSupported = ok ? 1 : 0;
    caps->nNumNVDECs = 1;
    caps->nOutputFormatMask = 1 << cudaVideoSurfaceFormat_NV12;
    caps->nMaxWidth = 4096;
    caps->nMaxHeight = 4096;
    caps->nMaxMBCount = 4096 * 4096 / 256;
    caps->nMinWidth = 48;
    caps->nMinHeight = 16;
    return CUDA_SUCCESS;
}

CUresult cuvidCreateDecoder(CUvideodecoder* decoder, CUVIDDECODECREATEINFO* info) {
    if (info->OutputFormat != cudaVideoSurfaceFormat_NV12 ||
        info->ChromaFormat != cudaVideoChromaFormat_420 || info->bitDepthMinus8 != 0 ||
        info->ulNumDecodeSurfaces < 1 || info->ulNumOutputSurfaces < 1 ||
        info->ulTargetWidth < 2 || info->ulTargetHeight < 2 || (info->ulTargetWidth & 1) ||
        (info->ulTargetHeight & 1) || info->ulWidth < info->ulTargetWidth ||
        info->ulHeight < info->ulTargetHeight)
        return (CUresult)INVALID_VALUE;
    FakeDecoder* d = new FakeDecoder();
    d->width = (unsigned int)info->ulTargetWidth;
    d->height = (unsigned int)info->ulTargetHeight;
    d->surfaces = (unsigned int)info->ulNumDecodeSurfaces;
    d->output_surfaces = (unsigned int)info->ulNumOutputSurfaces;
    d->pitch = ((size_t)d->width + 255) / 256 * 256 + 256;  // wider than a row, as NVDEC's
    d->memory = (unsigned char*)malloc(surface_bytes(d) * d->surfaces);
    memset(d->memory, 0xEE, surface_bytes(d) * d->surfaces);
    *decoder = (CUvideodecoder)d;
    return CUDA_SUCCESS;
}

CUresult cuvidDestroyDecoder(CUvideodecoder decoder) {
    FakeDecoder* d = (FakeDecoder*)decoder;
    if (!d) return (CUresult)INVALID_HANDLE;
    free(d->memory);
    delete d;
    return CUDA_SUCCESS;
}

// Writes the pending picture into surface CurrPicIdx as NV12.
CUresult cuvidDecodePicture(CUvideodecoder decoder, CUVIDPICPARAMS* pic) {
    FakeDecoder* d = (FakeDecoder*)decoder;
    if (!d || !pic || !pending) return (CUresult)INVALID_HANDLE;
    if (pic->CurrPicIdx < 0 || (unsigned int)pic->CurrPicIdx >= d->surfaces)
        return (CUresult)INVALID_VALUE;
    const AVFrame* f = pending;
    if ((unsigned int)f->width < d->width || (unsigned int)f->height < d->height)
        return (CUresult)INVALID_VALUE;
    unsigned char* base = d->memory + surface_bytes(d) * (size_t)pic->CurrPicIdx;
    for (unsigned int y = 0; y < d->height; ++y)
        memcpy(base + y * d->pitch, f->data[0] + (size_t)y * f->linesize[0], d->width);
    unsigned char* uv = base + d->pitch * d->height;
    for (unsigned int y = 0; y < d->height / 2; ++y) {
        const unsigned char* u = f->data[1] + (size_t)y * f->linesize[1];
        const unsigned char* v = f->data[2] + (size_t)y * f->linesize[2];
        for (unsigned int x = 0; x < d->width / 2; ++x) {
            uv[y * d->pitch + 2 * x] = u[x];
            uv[y * d->pitch + 2 * x + 1] = v[x];
        }
    }
    return CUDA_SUCCESS;
}

CUresult cuvidMapVideoFrame64(CUvideodecoder decoder, int index, unsigned long long* ptr,
                              unsigned int* pitch, CUVIDPROCPARAMS* proc) {
    FakeDecoder* d = (FakeDecoder*)decoder;
    if (!d || !proc) return (CUresult)INVALID_HANDLE;
    if (index < 0 || (unsigned int)index >= d->surfaces) return (CUresult)INVALID_VALUE;
    if (d->mapped >= d->output_surfaces) return (CUresult)MAP_FAILED;
    d->mapped += 1;
    *ptr = (unsigned long long)(d->memory + surface_bytes(d) * (size_t)index);
    *pitch = (unsigned int)d->pitch;
    return CUDA_SUCCESS;
}

CUresult cuvidUnmapVideoFrame64(CUvideodecoder decoder, unsigned long long) {
    FakeDecoder* d = (FakeDecoder*)decoder;
    if (!d || d->mapped == 0) return (CUresult)INVALID_VALUE;
    d->mapped -= 1;
    return CUDA_SUCCESS;
}

CUresult cuvidCreateVideoParser(CUvideoparser* parser, CUVIDPARSERPARAMS* params) {
    enum AVCodecID id;
    switch (params->CodecType) {
        case cudaVideoCodec_H264: id = AV_CODEC_ID_H264; break;
        case cudaVideoCodec_HEVC: id = AV_CODEC_ID_HEVC; break;
        default: return (CUresult)NOT_SUPPORTED;
    }
    if (!params->pfnSequenceCallback || !params->pfnDecodePicture || !params->pfnDisplayPicture)
        return (CUresult)INVALID_VALUE;
    const AVCodec* codec = avcodec_find_decoder(id);
    FakeParser* p = new FakeParser();
    p->params = *params;
    p->codec = avcodec_alloc_context3(codec);
    p->codec->thread_count = 1;
    if (avcodec_open2(p->codec, codec, NULL) < 0) return (CUresult)UNKNOWN;
    p->packet = av_packet_alloc();
    p->frame = av_frame_alloc();
    p->surfaces = params->ulMaxNumDecodeSurfaces;
    *parser = (CUvideoparser)p;
    return CUDA_SUCCESS;
}

// Hands every picture libavcodec has ready to the callbacks: the sequence callback
// before the first (its answer sets how many surfaces pictures cycle through), then
// for each, decode and display. False when a callback failed.
static bool deliver(FakeParser* p) {
    while (avcodec_receive_frame(p->codec, p->frame) == 0) {
        const AVFrame* f = p->frame;
        if (f->format != AV_PIX_FMT_YUV420P && f->format != AV_PIX_FMT_YUVJ420P) return false;
        if (!p->sequence_seen) {
            CUVIDEOFORMAT format;
            memset(&format, 0, sizeof format);
            format.codec = p->params.CodecType;
            format.progressive_sequence = 1;
            format.min_num_decode_surfaces = 4;
            format.coded_width = (unsigned int)p->codec->coded_width;
            format.coded_height = (unsigned int)p->codec->coded_height;
            format.display_area.right = f->width;
            format.display_area.bottom = f->height;
            format.chroma_format = cudaVideoChromaFormat_420;
            format.video_signal_description.video_full_range_flag =
                f->color_range == AVCOL_RANGE_JPEG || f->format == AV_PIX_FMT_YUVJ420P;
            format.video_signal_description.matrix_coefficients = (unsigned char)f->colorspace;
            int answer = p->params.pfnSequenceCallback(p->params.pUserData, &format);
            if (answer == 0) return false;
            if (answer > 1) p->surfaces = (unsigned int)answer;
            p->sequence_seen = 1;
        }
        CUVIDPICPARAMS pic;
        memset(&pic, 0, sizeof pic);
        pic.CurrPicIdx = (int)(p->next++ % p->surfaces);
        pending = f;
        int decoded = p->params.pfnDecodePicture(p->params.pUserData, &pic);
        pending = NULL;
        if (!decoded) return false;
        CUVIDPARSERDISPINFO display;
        memset(&display, 0, sizeof display);
        display.picture_index = pic.CurrPicIdx;
        display.progressive_frame = 1;
        display.timestamp = f->pts;
        if (!p->params.pfnDisplayPicture(p->params.pUserData, &display)) return false;
        av_frame_unref(p->frame);
    }
    return true;
}

CUresult cuvidParseVideoData(CUvideoparser parser, CUVIDSOURCEDATAPACKET* packet) {
    FakeParser* p = (FakeParser*)parser;
    if (!p || !packet) return (CUresult)INVALID_HANDLE;
    if (packet->payload_size > 0) {
        if (!(packet->flags & CUVID_PKT_ENDOFPICTURE)) return (CUresult)NOT_SUPPORTED;
        av_packet_unref(p->packet);
        if (av_new_packet(p->packet, (int)packet->payload_size) < 0) return (CUresult)UNKNOWN;
        memcpy(p->packet->data, packet->payload, packet->payload_size);
        p->packet->pts = (packet->flags & CUVID_PKT_TIMESTAMP) ? packet->timestamp : AV_NOPTS_VALUE;
        if (avcodec_send_packet(p->codec, p->packet) < 0) return (CUresult)UNKNOWN;
        if (!deliver(p)) return (CUresult)UNKNOWN;
    }
    if (packet->flags & CUVID_PKT_ENDOFSTREAM) {
        avcodec_send_packet(p->codec, NULL);
        if (!deliver(p)) return (CUresult)UNKNOWN;
        avcodec_flush_buffers(p->codec);
    }
    return CUDA_SUCCESS;
}

CUresult cuvidDestroyVideoParser(CUvideoparser parser) {
    FakeParser* p = (FakeParser*)parser;
    if (!p) return (CUresult)INVALID_HANDLE;
    av_frame_free(&p->frame);
    av_packet_free(&p->packet);
    avcodec_free_context(&p->codec);
    delete p;
    return CUDA_SUCCESS;
}

}  // extern "C"

// Our functions have NVIDIA's types.
static tcuvidGetDecoderCaps* const check_caps = &cuvidGetDecoderCaps;
static tcuvidCreateDecoder* const check_create = &cuvidCreateDecoder;
static tcuvidDestroyDecoder* const check_destroy = &cuvidDestroyDecoder;
static tcuvidDecodePicture* const check_decode = &cuvidDecodePicture;
static tcuvidMapVideoFrame64* const check_map = &cuvidMapVideoFrame64;
static tcuvidUnmapVideoFrame64* const check_unmap = &cuvidUnmapVideoFrame64;
static tcuvidCreateVideoParser* const check_parser = &cuvidCreateVideoParser;
static tcuvidParseVideoData* const check_parse = &cuvidParseVideoData;
static tcuvidDestroyVideoParser* const check_parser_destroy = &cuvidDestroyVideoParser;
