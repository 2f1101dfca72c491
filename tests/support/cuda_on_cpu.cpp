// Runs our CUDA C kernels on the CPU, one thread at a time, so their logic (indexing,
// geometry, rounding, tie-breaking) is tested on every machine, GPU or not. The kernel
// sources are included verbatim, as NVRTC compiles them; this file only supplies what
// CUDA would: the built-in thread coordinates, the device qualifiers, `min`,
// `__float_as_uint` and `atomicAdd` (exact when threads run one after another). It is
// no stand-in for running on a GPU (tests/gpu.rs and bench/gpu-check.sh do that): it
// cannot see races or the GPU's fused multiply-adds.
//
// Built by tests/kernels_on_cpu.rs with the host's C++ compiler into a shared library.

#include <math.h>
#include <stddef.h>
#include <string.h>

#include <algorithm>

#define __global__
#define __device__
#define __forceinline__ inline

struct Dim3 {
    unsigned int x, y, z;
};
// Per host thread: tests launch kernels from several threads at once.
static thread_local Dim3 blockIdx, threadIdx, blockDim, gridDim;

using std::max;
using std::min;

static inline unsigned int __float_as_uint(float f) {
    unsigned int u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {
    unsigned int old = *address;
    *address += value;
    return old;
}

// Every thread of a `grid` of `block`s, in turn.
template <class Kernel>
static void launch(Dim3 grid, Dim3 block, Kernel kernel) {
    gridDim = grid;
    blockDim = block;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx)
                for (unsigned int tz = 0; tz < block.z; ++tz)
                    for (unsigned int ty = 0; ty < block.y; ++ty)
                        for (unsigned int tx = 0; tx < block.x; ++tx) {
                            blockIdx = Dim3{bx, by, bz};
                            threadIdx = Dim3{tx, ty, tz};
                            kernel();
                        }
}

#include "preprocess.cu"
#include "postprocess.cu"

// The launches the server makes (src/gpu/batch.rs, src/gpu/candidates.rs), same grids.
static Dim3 tiles(int w, int h, int depth) {
    return Dim3{(unsigned int)(w + 15) / 16, (unsigned int)(h + 15) / 16, (unsigned int)depth};
}

extern "C" void cpu_letterbox_batch(int f16, const BatchJob* jobs, int count, int dst_w,
                                    int dst_h, void* out) {
    launch(tiles(dst_w, dst_h, count), Dim3{16, 16, 1}, [&] {
        if (f16) {
            letterbox_batch_f16(jobs, dst_w, dst_h, (unsigned short*)out);
        } else {
            letterbox_batch_f32(jobs, dst_w, dst_h, (float*)out);
        }
    });
}

// The one-frame kernels, with the job's fields as their arguments.
extern "C" void cpu_letterbox_single(int nv12, int f16, const BatchJob* job, int dst_w,
                                     int dst_h, void* out) {
    const BatchJob j = *job;
    const unsigned char* y = (const unsigned char*)j.y_plane;
    const unsigned char* u = (const unsigned char*)j.u_plane;
    const unsigned char* v = (const unsigned char*)j.v_plane;
    launch(tiles(dst_w, dst_h, 1), Dim3{16, 16, 1}, [&] {
#define ARGS y, u, v, j.y_stride, j.uv_stride, j.src_w, j.src_h, dst_w, dst_h, j.pad_x, \
             j.pad_y, j.resized_w, j.resized_h, j.matrix, j.slot
        if (nv12 && f16) letterbox_nv12_f16(ARGS, (unsigned short*)out);
        if (nv12 && !f16) letterbox_nv12_f32(ARGS, (float*)out);
        if (!nv12 && f16) letterbox_i420_f16(ARGS, (unsigned short*)out);
        if (!nv12 && !f16) letterbox_i420_f32(ARGS, (float*)out);
#undef ARGS
    });
}

extern "C" void cpu_yolo_candidates(const float* output, int batch, int channels,
                                    int classes, int anchors, float conf,
                                    unsigned int* counts, Candidate* found) {
    for (int b = 0; b < batch; ++b) counts[b] = 0;
    Dim3 grid{(unsigned int)(anchors + 255) / 256, (unsigned int)batch, 1};
    launch(grid, Dim3{256, 1, 1}, [&] {
        yolo_candidates(output, channels, classes, anchors, conf, counts, found);
    });
}
