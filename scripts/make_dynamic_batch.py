"""Makes an Ultralytics YOLOv8 ONNX export (static batch 1) batch-dynamic.

Usage: make_dynamic_batch.py IN.onnx OUT.onnx

Each Reshape whose target shape is a constant starting with 1 gets 0 there instead
("copy this dimension"), dim 0 of the graph's input and output is named `batch`, stale
shape annotations are cleared, and the graph is converted to opset 18. Needs only the
`onnx` package.
"""
import sys

import onnx
from onnx import numpy_helper, version_converter


def main(src: str, dst: str) -> None:
    model = onnx.load(src)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape_name = node.input[1]
        if shape_name in inits:
            arr = numpy_helper.to_array(inits[shape_name]).copy()
            if arr.size and arr[0] == 1:
                arr[0] = 0
                inits[shape_name].CopyFrom(numpy_helper.from_array(arr, shape_name))
                changed += 1
        elif shape_name in consts:
            attr = consts[shape_name].attribute[0]
            arr = numpy_helper.to_array(attr.t).copy()
            if arr.size and arr[0] == 1:
                arr[0] = 0
                attr.t.CopyFrom(numpy_helper.from_array(arr, attr.t.name))
                changed += 1
    for value in list(graph.input) + list(graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    del graph.value_info[:]
    model = version_converter.convert_version(model, 18)
    onnx.checker.check_model(model)
    onnx.save(model, dst)
    print(f"{dst}: {changed} Reshape(s) made batch-dynamic", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
