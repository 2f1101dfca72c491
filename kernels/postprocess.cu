// Post-processing kernels: the YOLOv8 candidate stage on the device, so only the
// anchors worth a look, not the whole [batch, 4 + classes, anchors] output, cross back
// to the host.
//
// One thread per anchor (blockIdx.y is the image). It finds the anchor's best class
// exactly as src/postprocess/yolo.rs's `candidates` does (classes in order, a later
// class wins only when strictly higher, so the first of equals is kept) and, when that
// score is at least `conf`, appends the anchor to its image's list with an atomic
// counter. Lists come out in no particular order; `yolo::from_candidates` sorts them
// (equal scores by anchor), so the detections do not depend on it. Each image's list
// has room for every anchor, so none can be lost. `counts` must be zero before the
// launch. No CUDA headers are needed.

// One candidate, laid out as `yolo::Candidate` (#[repr(C)], seven 4-byte fields).
struct Candidate {
    float cx;
    float cy;
    float w;
    float h;
    float score;
    unsigned int class_id;
    unsigned int anchor;
};

extern "C" __global__ void yolo_candidates(
    const float* output,
    int channels,
    int classes,
    int anchors,
    float conf,
    unsigned int* counts,
    Candidate* found) {
    int a = blockIdx.x * blockDim.x + threadIdx.x;
    int image = blockIdx.y;
    if (a >= anchors) {
        return;
    }
    const float* out = output + (size_t)image * channels * anchors;
    float best = -3.402823466e+38f; // f32::MIN
    unsigned int best_class = 0;
    for (int c = 0; c < classes; ++c) {
        // Neighbouring threads read neighbouring anchors: coalesced.
        float s = out[(size_t)(4 + c) * anchors + a];
        if (s > best) {
            best = s;
            best_class = (unsigned int)c;
        }
    }
    if (!(best >= conf)) {
        return;
    }
    unsigned int k = atomicAdd(&counts[image], 1u);
    Candidate cand;
    cand.cx = out[a];
    cand.cy = out[(size_t)anchors + a];
    cand.w = out[(size_t)2 * anchors + a];
    cand.h = out[(size_t)3 * anchors + a];
    cand.score = best;
    cand.class_id = best_class;
    cand.anchor = (unsigned int)a;
    found[(size_t)image * anchors + k] = cand;
}
