// A fake CUDA driver: the part of libcuda's C API kvs-infer calls, with "device"
// memory in host memory and our kernels run on the CPU (cuda_on_cpu.cpp) when
// launched. Loaded in place of libcuda.so.1 (KVS_INFER_CUDA_DRIVER), it lets the
// tests drive the whole host side of the GPU path on a machine without a GPU: the
// probe, the driver shim, module loading from NVRTC's images, kernel arguments and
// grids as the server marshals them, staging, copies (pitched ones included) and
// memsets. Everything runs synchronously, so it cannot show a missing synchronise or
// a race: only a GPU can (tests/gpu.rs, bench/gpu-check.sh). It does keep the driver's
// rules on contexts: calls need the context current on their thread, and a call after
// the primary context's last retain is released aborts (the real driver crashes there:
// the first H100 run found stages freeing their buffers after releasing it).
//
// Signatures are checked at compile time against NVIDIA's (MIT) dynamic-loading
// header from nv-codec-headers (Debian's libffmpeg-nvenc-dev), where it declares them.

#include <stdio.h>
#include <stdlib.h>

#include <atomic>

#include <ffnvcodec/dynlink_cuda.h>

#include "cuda_on_cpu.cpp"

// Errors this fake returns, as the driver numbers them.
static const int INVALID_VALUE = 1;
static const int OUT_OF_MEMORY = 2;
static const int INVALID_DEVICE = 101;
static const int INVALID_CONTEXT = 201;
static const int INVALID_IMAGE = 200;
static const int NOT_FOUND = 500;

static const char* const KERNELS[] = {
    "letterbox_i420_f32", "letterbox_i420_f16", "letterbox_nv12_f32",
    "letterbox_nv12_f16", "letterbox_batch_f32", "letterbox_batch_f16",
    "yolo_candidates",
};

// A loaded module: its image, so a function is found only in the module that has it.
struct FakeModule {
    const char* bytes;
    size_t len;
};

static bool contains(const FakeModule* m, const char* name) {
    size_t n = strlen(name);
    for (size_t i = 0; i + n <= m->len; ++i) {
        if (memcmp(m->bytes + i, name, n) == 0) return true;
    }
    return false;
}

template <class T>
static T arg(void** params, int i) {
    T value;
    memcpy(&value, params[i], sizeof value);
    return value;
}

extern "C" {

CUresult cuInit(unsigned int) { return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int* version) {
    *version = 12080;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetCount(int* count) {
    *count = 1;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGet(CUdevice* device, int ordinal) {
    if (ordinal != 0) return (CUresult)INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    snprintf(name, (size_t)len, "kvs-infer fake GPU (kernels on the CPU)");
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetAttribute(int* value, CUdevice_attribute attribute, CUdevice) {
    switch ((int)attribute) {
        case 75: *value = 9; return CUDA_SUCCESS;  // compute capability 9.0
        case 76: *value = 0; return CUDA_SUCCESS;
        default: return (CUresult)INVALID_VALUE;
    }
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    *bytes = (size_t)16 << 30;
    return CUDA_SUCCESS;
}

// The primary context, its retains, and the context current on each thread.
static int primary_context;
static std::atomic<int> retains;
static thread_local CUcontext current;

// What the driver asks of every call below but the device queries: a live context,
// current on the calling thread.
#define NEEDS_CONTEXT(call)                                                              \
    do {                                                                                 \
        if (retains.load() <= 0) {                                                       \
            fprintf(stderr,                                                              \
                    "fake CUDA: %s after the primary context's last retain was released " \
                    "(the real driver crashes here)\n",                                  \
                    call);                                                               \
            abort();                                                                     \
        }                                                                                \
        if (current != (CUcontext)&primary_context) return (CUresult)INVALID_CONTEXT;    \
    } while (0)

CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice) {
    retains.fetch_add(1);
    *ctx = (CUcontext)&primary_context;
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) {
    if (retains.fetch_sub(1) <= 0) {
        retains.fetch_add(1);
        return (CUresult)INVALID_CONTEXT;
    }
    return CUDA_SUCCESS;
}
CUresult cuCtxSetCurrent(CUcontext ctx) {
    if (ctx != nullptr && ctx != (CUcontext)&primary_context) return (CUresult)INVALID_VALUE;
    current = ctx;
    return CUDA_SUCCESS;
}
CUresult cuCtxSynchronize(void) {
    NEEDS_CONTEXT("cuCtxSynchronize");
    return CUDA_SUCCESS;
}

// A cubin (an ELF image, its size from its header) or PTX (text); anything else is
// refused as the driver would.
CUresult cuModuleLoadData(CUmodule* module, const void* image) {
    NEEDS_CONTEXT("cuModuleLoadData");
    const char* bytes = (const char*)image;
    size_t len;
    if (memcmp(bytes, "\x7f" "ELF", 4) == 0 && bytes[4] == 2) {
        unsigned long long shoff;
        unsigned short shentsize, shnum;
        memcpy(&shoff, bytes + 0x28, 8);
        memcpy(&shentsize, bytes + 0x3a, 2);
        memcpy(&shnum, bytes + 0x3c, 2);
        len = (size_t)(shoff + (unsigned long long)shentsize * shnum);
    } else if (strstr(bytes, ".version") && strstr(bytes, ".target")) {
        len = strlen(bytes);
    } else {
        return (CUresult)INVALID_IMAGE;
    }
    *module = (CUmodule) new FakeModule{bytes, len};
    // The image's bytes are the caller's; keep a copy.
    FakeModule* m = (FakeModule*)*module;
    char* copy = (char*)malloc(len);
    memcpy(copy, bytes, len);
    m->bytes = copy;
    return CUDA_SUCCESS;
}
CUresult cuModuleUnload(CUmodule module) {
    NEEDS_CONTEXT("cuModuleUnload");
    FakeModule* m = (FakeModule*)module;
    free((void*)m->bytes);
    delete m;
    return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
    NEEDS_CONTEXT("cuModuleGetFunction");
    for (const char* const& known : KERNELS) {
        if (strcmp(known, name) == 0 && contains((FakeModule*)module, name)) {
            *function = (CUfunction)&known;
            return CUDA_SUCCESS;
        }
    }
    return (CUresult)NOT_FOUND;
}

CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes) {
    NEEDS_CONTEXT("cuMemAlloc_v2");
    void* p = malloc(bytes ? bytes : 1);
    if (!p) return (CUresult)OUT_OF_MEMORY;
    memset(p, 0xA5, bytes);  // like device memory, not zeroed: junk a kernel must not read
    *ptr = (CUdeviceptr)p;
    return CUDA_SUCCESS;
}
CUresult cuMemFree_v2(CUdeviceptr ptr) {
    NEEDS_CONTEXT("cuMemFree_v2");
    free((void*)ptr);
    return CUDA_SUCCESS;
}
CUresult cuMemHostAlloc(void** ptr, size_t bytes, unsigned int) {
    NEEDS_CONTEXT("cuMemHostAlloc");
    *ptr = malloc(bytes ? bytes : 1);
    return *ptr ? CUDA_SUCCESS : (CUresult)OUT_OF_MEMORY;
}
CUresult cuMemFreeHost(void* ptr) {
    NEEDS_CONTEXT("cuMemFreeHost");
    free(ptr);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t bytes) {
    NEEDS_CONTEXT("cuMemcpyHtoD_v2");
    memcpy((void*)dst, src, bytes);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t bytes) {
    NEEDS_CONTEXT("cuMemcpyDtoH_v2");
    memcpy(dst, (const void*)src, bytes);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t bytes, CUstream) {
    return cuMemcpyHtoD_v2(dst, src, bytes);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream) {
    NEEDS_CONTEXT("cuMemcpyDtoDAsync_v2");
    memcpy((void*)dst, (const void*)src, bytes);
    return CUDA_SUCCESS;
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int value, size_t count, CUstream) {
    NEEDS_CONTEXT("cuMemsetD32Async");
    unsigned int* p = (unsigned int*)dst;
    for (size_t i = 0; i < count; ++i) p[i] = value;
    return CUDA_SUCCESS;
}
CUresult cuMemcpy2D_v2(const CUDA_MEMCPY2D* copy) {
    NEEDS_CONTEXT("cuMemcpy2D_v2");
    const char* src = copy->srcMemoryType == CU_MEMORYTYPE_HOST ? (const char*)copy->srcHost
                                                                : (const char*)copy->srcDevice;
    char* dst = copy->dstMemoryType == CU_MEMORYTYPE_HOST ? (char*)copy->dstHost
                                                          : (char*)copy->dstDevice;
    if (copy->srcPitch < copy->WidthInBytes || copy->dstPitch < copy->WidthInBytes)
        return (CUresult)INVALID_VALUE;
    for (size_t row = 0; row < copy->Height; ++row) {
        memcpy(dst + (copy->dstY + row) * copy->dstPitch + copy->dstXInBytes,
               src + (copy->srcY + row) * copy->srcPitch + copy->srcXInBytes,
               copy->WidthInBytes);
    }
    return CUDA_SUCCESS;
}

CUresult cuStreamCreate(CUstream* stream, unsigned int) {
    NEEDS_CONTEXT("cuStreamCreate");
    *stream = (CUstream) new int(0);
    return CUDA_SUCCESS;
}
CUresult cuStreamDestroy_v2(CUstream stream) {
    NEEDS_CONTEXT("cuStreamDestroy_v2");
    delete (int*)stream;
    return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(CUstream) {
    NEEDS_CONTEXT("cuStreamSynchronize");
    return CUDA_SUCCESS;
}

CUresult cuGetErrorName(CUresult error, const char** text) {
    switch ((int)error) {
        case INVALID_VALUE: *text = "CUDA_ERROR_INVALID_VALUE"; break;
        case INVALID_IMAGE: *text = "CUDA_ERROR_INVALID_IMAGE"; break;
        case INVALID_CONTEXT: *text = "CUDA_ERROR_INVALID_CONTEXT"; break;
        case NOT_FOUND: *text = "CUDA_ERROR_NOT_FOUND"; break;
        default: *text = "CUDA_ERROR_UNKNOWN"; break;
    }
    return CUDA_SUCCESS;
}

// Runs `function` over the grid the caller asked for, its arguments read from
// `params` as the kernel declares them.
CUresult cuLaunchKernel(CUfunction function, unsigned int gx, unsigned int gy, unsigned int gz,
                        unsigned int bx, unsigned int by, unsigned int bz, unsigned int,
                        CUstream, void** p, void** extra) {
    NEEDS_CONTEXT("cuLaunchKernel");
    if (extra) return (CUresult)INVALID_VALUE;
    const char* name = *(const char* const*)function;
    Dim3 grid{gx, gy, gz}, block{bx, by, bz};
    if (strncmp(name, "letterbox_batch_", 16) == 0) {
        const BatchJob* jobs = arg<const BatchJob*>(p, 0);
        int w = arg<int>(p, 1), h = arg<int>(p, 2);
        if (strcmp(name, "letterbox_batch_f16") == 0) {
            unsigned short* out = arg<unsigned short*>(p, 3);
            launch(grid, block, [&] { letterbox_batch_f16(jobs, w, h, out); });
        } else {
            float* out = arg<float*>(p, 3);
            launch(grid, block, [&] { letterbox_batch_f32(jobs, w, h, out); });
        }
    } else if (strncmp(name, "letterbox_", 10) == 0) {
        const unsigned char* y = arg<const unsigned char*>(p, 0);
        const unsigned char* u = arg<const unsigned char*>(p, 1);
        const unsigned char* v = arg<const unsigned char*>(p, 2);
        int i[12];
        for (int k = 0; k < 12; ++k) i[k] = arg<int>(p, 3 + k);
#define ARGS y, u, v, i[0], i[1], i[2], i[3], i[4], i[5], i[6], i[7], i[8], i[9], i[10], i[11]
        void* out = arg<void*>(p, 15);
        if (strcmp(name, "letterbox_i420_f32") == 0)
            launch(grid, block, [&] { letterbox_i420_f32(ARGS, (float*)out); });
        else if (strcmp(name, "letterbox_i420_f16") == 0)
            launch(grid, block, [&] { letterbox_i420_f16(ARGS, (unsigned short*)out); });
        else if (strcmp(name, "letterbox_nv12_f32") == 0)
            launch(grid, block, [&] { letterbox_nv12_f32(ARGS, (float*)out); });
        else
            launch(grid, block, [&] { letterbox_nv12_f16(ARGS, (unsigned short*)out); });
#undef ARGS
    } else if (strcmp(name, "yolo_candidates") == 0) {
        const float* output = arg<const float*>(p, 0);
        int channels = arg<int>(p, 1), classes = arg<int>(p, 2), anchors = arg<int>(p, 3);
        float conf = arg<float>(p, 4);
        unsigned int* counts = arg<unsigned int*>(p, 5);
        Candidate* found = arg<Candidate*>(p, 6);
        launch(grid, block, [&] {
            yolo_candidates(output, channels, classes, anchors, conf, counts, found);
        });
    } else {
        return (CUresult)NOT_FOUND;
    }
    return CUDA_SUCCESS;
}

}  // extern "C"

// Where nv-codec-headers declares a function, ours must have its type.
static tcuInit* const check_init = &cuInit;
static tcuDeviceGetCount* const check_count = &cuDeviceGetCount;
static tcuDeviceGet* const check_get = &cuDeviceGet;
static tcuDeviceGetAttribute* const check_attribute = &cuDeviceGetAttribute;
static tcuDeviceGetName* const check_name = &cuDeviceGetName;
static tcuDevicePrimaryCtxRetain* const check_retain = &cuDevicePrimaryCtxRetain;
static tcuDevicePrimaryCtxRelease* const check_release = &cuDevicePrimaryCtxRelease_v2;
static tcuModuleLoadData* const check_load = &cuModuleLoadData;
static tcuModuleUnload* const check_unload = &cuModuleUnload;
static tcuModuleGetFunction* const check_function = &cuModuleGetFunction;
static tcuMemAlloc_v2* const check_alloc = &cuMemAlloc_v2;
static tcuMemFree_v2* const check_free = &cuMemFree_v2;
static tcuMemcpyHtoD_v2* const check_htod = &cuMemcpyHtoD_v2;
static tcuMemcpyDtoH_v2* const check_dtoh = &cuMemcpyDtoH_v2;
static tcuMemcpyHtoDAsync_v2* const check_htod_async = &cuMemcpyHtoDAsync_v2;
static tcuMemcpyDtoDAsync_v2* const check_dtod_async = &cuMemcpyDtoDAsync_v2;
static tcuMemcpy2D_v2* const check_2d = &cuMemcpy2D_v2;
static tcuStreamCreate* const check_stream = &cuStreamCreate;
static tcuStreamDestroy_v2* const check_stream_destroy = &cuStreamDestroy_v2;
static tcuStreamSynchronize* const check_stream_sync = &cuStreamSynchronize;
static tcuLaunchKernel* const check_launch = &cuLaunchKernel;
static tcuGetErrorName* const check_error_name = &cuGetErrorName;
