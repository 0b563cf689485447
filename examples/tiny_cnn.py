"""Generate the built-in example: a small CNN with a residual block and an Inception-style branch.

    python examples/tiny_cnn.py [OUT.onnx]      # default: examples/tiny_cnn.onnx

Random (seeded) weights, named nodes, input `image` of shape [1, 3, 32, 32], output `probs`.
It is small enough to compile and verify in a second and has the graph shapes that make
splitting interesting: a skip connection (Add) and parallel branches joined by Concat.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []

    def weight(name: str, *shape: int) -> str:
        fan_in = int(np.prod(shape[1:])) or 1
        array = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        weights.append(numpy_helper.from_array(array, name))
        return name

    def conv(name: str, x: str, cin: int, cout: int, k: int, stride: int = 1) -> str:
        w = weight(f"{name}.w", cout, cin, k, k)
        b = weight(f"{name}.b", cout)
        nodes.append(helper.make_node("Conv", [x, w, b], [name], name=name, kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        return name

    def relu(name: str, x: str) -> str:
        nodes.append(helper.make_node("Relu", [x], [name], name=name))
        return name

    x = relu("stem_relu", conv("stem", "image", 3, 16, 3))
    nodes.append(helper.make_node("MaxPool", [x], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]))
    y = relu("res_relu1", conv("res_conv1", "pool1", 16, 16, 3))
    y = conv("res_conv2", y, 16, 16, 3)
    nodes.append(helper.make_node("Add", ["pool1", y], ["res_add"], name="res_add"))
    r = relu("res_out", "res_add")
    a = relu("branch_a_relu", conv("branch_a", r, 16, 8, 1))
    b = relu("branch_b_relu", conv("branch_b2", relu("branch_b1_relu", conv("branch_b1", r, 16, 8, 1)), 8, 8, 3))
    c = relu("branch_c_relu", conv("branch_c", r, 16, 8, 5))
    nodes.append(helper.make_node("Concat", [a, b, c], ["mixed"], name="mixed", axis=1))
    d = relu("down_relu", conv("down", "mixed", 24, 32, 3, stride=2))
    nodes.append(helper.make_node("GlobalAveragePool", [d], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1))
    fc_w = weight("fc.w", 10, 32)
    fc_b = weight("fc.b", 10)
    nodes.append(helper.make_node("Gemm", ["flat", fc_w, fc_b], ["logits"], name="fc", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))

    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgec-example")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("tiny_cnn.onnx")
    onnx.save(build(), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
