// Preprocessing kernels: a decoded frame (I420 or NV12, 8-bit) → letterboxed, normalised
// RGB in CHW order, written straight into slot `slot` of a batch tensor
// [batch, 3, dst_h, dst_w] (fp32, or fp16 stored as raw bits).
//
// One thread per output pixel, padding included (grey 114/255), so a slot needs no
// separate fill. The arithmetic mirrors src/preprocess/cpu.rs, the reference these
// kernels are tested against: bilinear taps with pixel centres aligned (OpenCV's
// INTER_LINEAR), luma and chroma sampled on their own grids, then the frame's colour
// matrix. Compiled at start-up by NVRTC for the GPU present (src/gpu/kernels.rs); no
// CUDA headers are needed.

#define PAD_VALUE (114.0f / 255.0f)

// Colour matrices, as src/gpu/kernels.rs numbers them.
#define MATRIX_BT601 0
#define MATRIX_BT709 1
#define MATRIX_BT601_FULL 2

// The two bilinear taps of output index `d` along an axis of `src_len` source samples
// resized to `dst_len`.
__device__ __forceinline__ void taps(int d, int dst_len, int src_len, int* i0, int* i1, float* w) {
    float ratio = (float)src_len / (float)dst_len;
    float s = fmaxf(((float)d + 0.5f) * ratio - 0.5f, 0.0f);
    int last = src_len - 1;
    int a = min((int)floorf(s), last);
    *i0 = a;
    *i1 = min(a + 1, last);
    *w = s - (float)a;
}

__device__ __forceinline__ float bilinear(float p00, float p01, float p10, float p11, float wx, float wy) {
    float top = p00 * (1.0f - wx) + p01 * wx;
    float bottom = p10 * (1.0f - wx) + p11 * wx;
    return top * (1.0f - wy) + bottom * wy;
}

// YUV (0..255) → RGB (0..1).
__device__ __forceinline__ void yuv_to_rgb(int matrix, float y, float u, float v, float* r, float* g, float* b) {
    u -= 128.0f;
    v -= 128.0f;
    float rr, gg, bb;
    if (matrix == MATRIX_BT709) {
        float yy = 1.164383f * (y - 16.0f);
        rr = yy + 1.792741f * v;
        gg = yy - 0.213249f * u - 0.532909f * v;
        bb = yy + 2.112402f * u;
    } else if (matrix == MATRIX_BT601_FULL) {
        rr = y + 1.402f * v;
        gg = y - 0.344136f * u - 0.714136f * v;
        bb = y + 1.772f * u;
    } else {
        float yy = 1.164383f * (y - 16.0f);
        rr = yy + 1.596027f * v;
        gg = yy - 0.391762f * u - 0.812968f * v;
        bb = yy + 2.017232f * u;
    }
    *r = fminf(fmaxf(rr, 0.0f), 255.0f) / 255.0f;
    *g = fminf(fmaxf(gg, 0.0f), 255.0f) / 255.0f;
    *b = fminf(fmaxf(bb, 0.0f), 255.0f) / 255.0f;
}

// IEEE half from float, round to nearest even (what __float2half_rn does), without
// cuda_fp16.h so NVRTC needs no headers.
__device__ __forceinline__ unsigned short f32_to_f16_bits(float f) {
    unsigned int x = __float_as_uint(f);
    unsigned int sign = (x >> 16) & 0x8000u;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    unsigned int mant = x & 0x7fffffu;
    if (exp >= 31) {
        return (unsigned short)(sign | 0x7c00u);  // inputs are 0..1: never reached
    }
    if (exp <= 0) {
        if (exp < -10) {
            return (unsigned short)sign;
        }
        mant |= 0x800000u;
        unsigned int shift = (unsigned int)(14 - exp);
        unsigned int half = mant >> shift;
        unsigned int rest = mant & ((1u << shift) - 1u);
        unsigned int mid = 1u << (shift - 1u);
        if (rest > mid || (rest == mid && (half & 1u))) {
            half += 1u;
        }
        return (unsigned short)(sign | half);
    }
    unsigned int half = sign | ((unsigned int)exp << 10) | (mant >> 13);
    unsigned int rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) {
        half += 1u;
    }
    return (unsigned short)half;
}

// The RGB value of output pixel (dx, dy), or padding. `chroma_step` is 1 for planar U/V
// (I420) and 2 for interleaved UV (NV12, where `v` is `u + 1`).
__device__ __forceinline__ void pixel(
    const unsigned char* y_plane, const unsigned char* u_plane, const unsigned char* v_plane,
    int y_stride, int uv_stride, int chroma_step, int src_w, int src_h,
    int dx, int dy, int pad_x, int pad_y, int resized_w, int resized_h, int matrix,
    float* r, float* g, float* b) {
    int x = dx - pad_x;
    int y = dy - pad_y;
    if (x < 0 || y < 0 || x >= resized_w || y >= resized_h) {
        *r = PAD_VALUE;
        *g = PAD_VALUE;
        *b = PAD_VALUE;
        return;
    }
    int lx0, lx1, ly0, ly1, cx0, cx1, cy0, cy1;
    float lwx, lwy, cwx, cwy;
    taps(x, resized_w, src_w, &lx0, &lx1, &lwx);
    taps(y, resized_h, src_h, &ly0, &ly1, &lwy);
    taps(x, resized_w, src_w / 2, &cx0, &cx1, &cwx);
    taps(y, resized_h, src_h / 2, &cy0, &cy1, &cwy);
    const unsigned char* l0 = y_plane + ly0 * y_stride;
    const unsigned char* l1 = y_plane + ly1 * y_stride;
    float yv = bilinear(l0[lx0], l0[lx1], l1[lx0], l1[lx1], lwx, lwy);
    int c00 = cy0 * uv_stride + cx0 * chroma_step;
    int c01 = cy0 * uv_stride + cx1 * chroma_step;
    int c10 = cy1 * uv_stride + cx0 * chroma_step;
    int c11 = cy1 * uv_stride + cx1 * chroma_step;
    float uv = bilinear(u_plane[c00], u_plane[c01], u_plane[c10], u_plane[c11], cwx, cwy);
    float vv = bilinear(v_plane[c00], v_plane[c01], v_plane[c10], v_plane[c11], cwx, cwy);
    yuv_to_rgb(matrix, yv, uv, vv, r, g, b);
}

#define KERNEL_ARGS                                                                      \
    const unsigned char* y_plane, const unsigned char* u_plane,                          \
    const unsigned char* v_plane, int y_stride, int uv_stride, int src_w, int src_h,     \
    int dst_w, int dst_h, int pad_x, int pad_y, int resized_w, int resized_h, int matrix, \
    int slot

#define BODY(CHROMA_STEP, STORE)                                                          \
    int dx = blockIdx.x * blockDim.x + threadIdx.x;                                       \
    int dy = blockIdx.y * blockDim.y + threadIdx.y;                                       \
    if (dx >= dst_w || dy >= dst_h) return;                                               \
    float r, g, b;                                                                        \
    pixel(y_plane, u_plane, v_plane, y_stride, uv_stride, CHROMA_STEP, src_w, src_h, dx,  \
          dy, pad_x, pad_y, resized_w, resized_h, matrix, &r, &g, &b);                    \
    size_t area = (size_t)dst_w * (size_t)dst_h;                                          \
    size_t base = (size_t)slot * 3 * area + (size_t)dy * dst_w + dx;                      \
    STORE(out[base], r);                                                                  \
    STORE(out[base + area], g);                                                           \
    STORE(out[base + 2 * area], b);

#define STORE_F32(dst, value) dst = value
#define STORE_F16(dst, value) dst = f32_to_f16_bits(value)

extern "C" __global__ void letterbox_i420_f32(KERNEL_ARGS, float* out) {
    BODY(1, STORE_F32)
}

extern "C" __global__ void letterbox_i420_f16(KERNEL_ARGS, unsigned short* out) {
    BODY(1, STORE_F16)
}

// NV12: `u_plane` is the interleaved UV plane and `v_plane` must be `u_plane + 1`.
extern "C" __global__ void letterbox_nv12_f32(KERNEL_ARGS, float* out) {
    BODY(2, STORE_F32)
}

extern "C" __global__ void letterbox_nv12_f16(KERNEL_ARGS, unsigned short* out) {
    BODY(2, STORE_F16)
}

// One launch for a whole batch: blockIdx.z picks the frame, whose planes, geometry and
// slot come from `jobs` in device memory. Frames of different sizes, layouts and
// colour matrices batch together. The layout mirrors `BatchJob` in
// src/gpu/letterbox.rs (a test there checks its size).
struct BatchJob {
    unsigned long long y_plane, u_plane, v_plane;
    int y_stride, uv_stride, chroma_step, src_w, src_h;
    int pad_x, pad_y, resized_w, resized_h, matrix, slot, reserved;
};

#define BATCH_BODY(STORE)                                                                 \
    const BatchJob job = jobs[blockIdx.z];                                                \
    int dx = blockIdx.x * blockDim.x + threadIdx.x;                                       \
    int dy = blockIdx.y * blockDim.y + threadIdx.y;                                       \
    if (dx >= dst_w || dy >= dst_h) return;                                               \
    float r, g, b;                                                                        \
    pixel((const unsigned char*)job.y_plane, (const unsigned char*)job.u_plane,           \
          (const unsigned char*)job.v_plane, job.y_stride, job.uv_stride,                 \
          job.chroma_step, job.src_w, job.src_h, dx, dy, job.pad_x, job.pad_y,            \
          job.resized_w, job.resized_h, job.matrix, &r, &g, &b);                          \
    size_t area = (size_t)dst_w * (size_t)dst_h;                                          \
    size_t base = (size_t)job.slot * 3 * area + (size_t)dy * dst_w + dx;                  \
    STORE(out[base], r);                                                                  \
    STORE(out[base + area], g);                                                           \
    STORE(out[base + 2 * area], b);

extern "C" __global__ void letterbox_batch_f32(const BatchJob* jobs, int dst_w, int dst_h, float* out) {
    BATCH_BODY(STORE_F32)
}

extern "C" __global__ void letterbox_batch_f16(const BatchJob* jobs, int dst_w, int dst_h, unsigned short* out) {
    BATCH_BODY(STORE_F16)
}
