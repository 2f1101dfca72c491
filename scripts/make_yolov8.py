"""Builds a YOLOv8 detector (n, s, m, l or x) as ONNX with random weights.

Usage: make_yolov8.py SCALE OUT.onnx [--classes 80] [--imgsz 640]

The graph is the real YOLOv8 architecture (Ultralytics' yolov8.yaml: Conv/C2f/SPPF
backbone, PAN neck, decoupled Detect head with DFL), with batch-norm folded into the
convolutions as in an exported model, so its compute cost is that of the real model;
only the weights are random, so its detections are meaningless. Input `images`
[batch, 3, imgsz, imgsz] float32, output `output0` [batch, 4 + classes, anchors] like an
Ultralytics export, batch dynamic, opset 18. The `names` metadata lists `class_0`…,
and `kvs_infer_random_weights` marks the file. Needs only the `onnx` package (numpy
comes with it).
"""
import argparse
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SCALES = {  # depth, width, max channels
    "n": (0.33, 0.25, 1024),
    "s": (0.33, 0.50, 1024),
    "m": (0.67, 0.75, 768),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.25, 512),
}


class Graph:
    def __init__(self, seed):
        self.nodes, self.inits, self.n = [], [], 0
        self.rng = np.random.default_rng(seed)
        self.params = 0

    def name(self, prefix):
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, array, prefix="c"):
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv2d(self, x, c1, c2, k=1, s=1, bias=True):
        fan_in = c1 * k * k
        w = (self.rng.standard_normal((c2, c1, k, k)) / math.sqrt(fan_in)).astype(np.float32)
        inputs = [x, self.const(w, "w")]
        self.params += w.size
        if bias:
            b = np.zeros(c2, np.float32)
            inputs.append(self.const(b, "b"))
            self.params += b.size
        p = k // 2
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[s, s], pads=[p, p, p, p])

    def conv(self, x, c1, c2, k=1, s=1):
        """Conv2d + folded BN + SiLU."""
        y = self.conv2d(x, c1, c2, k, s)
        return self.op("Mul", [y, self.op("Sigmoid", [y])])

    def bottleneck(self, x, c, shortcut):
        y = self.conv(self.conv(x, c, c, 3), c, c, 3)
        return self.op("Add", [x, y]) if shortcut else y

    def c2f(self, x, c1, c2, n, shortcut):
        c = c2 // 2
        y = self.conv(x, c1, 2 * c, 1)
        a, b = self.name("split"), self.name("split")
        self.nodes.append(helper.make_node("Split", [y, self.const(np.array([c, c], np.int64))], [a, b], axis=1))
        parts = [a, b]
        for _ in range(n):
            parts.append(self.bottleneck(parts[-1], c, shortcut))
        return self.conv(self.op("Concat", parts, axis=1), (2 + n) * c, c2, 1)

    def sppf(self, x, c1, c2):
        c = c1 // 2
        y = [self.conv(x, c1, c, 1)]
        for _ in range(3):
            y.append(self.op("MaxPool", [y[-1]], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]))
        return self.conv(self.op("Concat", y, axis=1), 4 * c, c2, 1)

    def upsample(self, x):
        scales = self.const(np.array([1, 1, 2, 2], np.float32))
        return self.op("Resize", [x, "", scales], mode="nearest")


def build(scale, classes, imgsz, seed=0):
    depth, width, max_ch = SCALES[scale]
    ch = lambda c: int(math.ceil(min(c, max_ch) * width / 8) * 8)  # noqa: E731
    rep = lambda n: max(round(n * depth), 1)  # noqa: E731
    g = Graph(seed)
    x = "images"
    c = [ch(64), ch(128), ch(256), ch(512), ch(1024)]
    x = g.conv(x, 3, c[0], 3, 2)
    x = g.conv(x, c[0], c[1], 3, 2)
    x = g.c2f(x, c[1], c[1], rep(3), True)
    x = g.conv(x, c[1], c[2], 3, 2)
    p3 = g.c2f(x, c[2], c[2], rep(6), True)
    x = g.conv(p3, c[2], c[3], 3, 2)
    p4 = g.c2f(x, c[3], c[3], rep(6), True)
    x = g.conv(p4, c[3], c[4], 3, 2)
    x = g.c2f(x, c[4], c[4], rep(3), True)
    p5 = g.sppf(x, c[4], c[4])
    # PAN neck
    x = g.op("Concat", [g.upsample(p5), p4], axis=1)
    h12 = g.c2f(x, c[4] + c[3], c[3], rep(3), False)
    x = g.op("Concat", [g.upsample(h12), p3], axis=1)
    o3 = g.c2f(x, c[3] + c[2], c[2], rep(3), False)
    x = g.op("Concat", [g.conv(o3, c[2], c[2], 3, 2), h12], axis=1)
    o4 = g.c2f(x, c[2] + c[3], c[3], rep(3), False)
    x = g.op("Concat", [g.conv(o4, c[3], c[3], 3, 2), p5], axis=1)
    o5 = g.c2f(x, c[3] + c[4], c[4], rep(3), False)
    # Detect head: per level a box branch (4 × 16 DFL bins) and a class branch.
    reg_max = 16
    levels = [(o3, c[2], 8), (o4, c[3], 16), (o5, c[4], 32)]
    c2 = max(16, c[2] // 4, 4 * reg_max)
    c3 = max(c[2], min(classes, 100))
    flat, anchors, strides = [], [], []
    for feat, cin, stride in levels:
        box = g.conv2d(g.conv(g.conv(feat, cin, c2, 3), c2, c2, 3), c2, 4 * reg_max, 1)
        cls = g.conv2d(g.conv(g.conv(feat, cin, c3, 3), c3, c3, 3), c3, classes, 1)
        both = g.op("Concat", [box, cls], axis=1)
        flat.append(g.op("Reshape", [both, g.const(np.array([0, 4 * reg_max + classes, -1], np.int64))]))
        n = imgsz // stride
        sy, sx = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5, indexing="ij")
        anchors.append(np.stack([sx.ravel(), sy.ravel()]))
        strides.append(np.full(n * n, stride))
    y = g.op("Concat", flat, axis=2)
    box, cls = g.name("box"), g.name("cls")
    g.nodes.append(
        helper.make_node("Split", [y, g.const(np.array([4 * reg_max, classes], np.int64))], [box, cls], axis=1)
    )
    # DFL: softmax over the 16 bins of each side, expectation over 0..15.
    b = g.op("Reshape", [box, g.const(np.array([0, 4, reg_max, -1], np.int64))])
    b = g.op("Softmax", [g.op("Transpose", [b], perm=[0, 2, 1, 3])], axis=1)
    dfl = np.arange(reg_max, dtype=np.float32).reshape(1, reg_max, 1, 1)
    b = g.op("Conv", [b, g.const(dfl)], kernel_shape=[1, 1])
    dist = g.op("Reshape", [b, g.const(np.array([0, 4, -1], np.int64))])
    lt, rb = g.name("lt"), g.name("rb")
    g.nodes.append(helper.make_node("Split", [dist, g.const(np.array([2, 2], np.int64))], [lt, rb], axis=1))
    anchor = g.const(np.concatenate(anchors, axis=1)[None].astype(np.float32))
    x1y1 = g.op("Sub", [anchor, lt])
    x2y2 = g.op("Add", [anchor, rb])
    cxcy = g.op("Div", [g.op("Add", [x1y1, x2y2]), g.const(np.array(2.0, np.float32))])
    wh = g.op("Sub", [x2y2, x1y1])
    stride = g.const(np.concatenate(strides)[None, None].astype(np.float32))
    boxes = g.op("Mul", [g.op("Concat", [cxcy, wh], axis=1), stride])
    out = g.op("Concat", [boxes, g.op("Sigmoid", [cls])], axis=1)
    g.nodes.append(helper.make_node("Identity", [out], ["output0"]))

    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, imgsz, imgsz])
    total = sum(a.shape[1] for a in anchors)
    outp = helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + classes, total])
    graph = helper.make_graph(g.nodes, f"yolov8{scale}", [inp], [outp], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    names = "{" + ", ".join(f"{i}: 'class_{i}'" for i in range(classes)) + "}"
    for key, value in [
        ("names", names),
        ("kvs_infer_random_weights", "true"),
        ("description", f"YOLOv8{scale} architecture with random weights (kvs-infer benchmarks)"),
    ]:
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model)
    return model, g.params


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scale", choices=sorted(SCALES))
    parser.add_argument("out")
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--imgsz", type=int, default=640)
    args = parser.parse_args()
    model, params = build(args.scale, args.classes, args.imgsz)
    onnx.save(model, args.out)
    print(f"{args.out}: YOLOv8{args.scale}, {params / 1e6:.1f} M parameters, random weights")


if __name__ == "__main__":
    main()
