"""Statistics repair with calibration data: bias compensation and BatchNorm re-estimation."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from edgec.passes.prune import Prune
from edgec.passes.prune.calibration import session
from graphs import Net
from prune_graphs import bn, dead_conv, feeds, prepared, same_outputs
from split_helpers import run


def constant_channel(tail_bn: bool = False):
    """c1 (1x1) → bn → relu → c2 (1x1): channel 0 of c1 has a zero filter but β = 2, so it carries the constant 2."""
    net = Net({"x": [1, 3, 6, 6]}, seed=7)
    y = bn(net, "bn1", dead_conv(net, "c1", "x", 3, 5, [0], k=1), 5, [0])
    beta = next(w for w in net.weights if w.name == "bn1.1")
    values = numpy_helper.to_array(beta).copy()
    values[0] = 2.0
    beta.CopyFrom(numpy_helper.from_array(values, "bn1.1"))
    y = net.op("Conv", "c2", [net.op("Relu", "r1", [y]), net.weight("c2.w", 4, 5, 1, 1), net.weight("c2.b", 4)])
    out = bn(net, "bn2", y, 4) if tail_bn else y
    return net.model([out])


def calibration_dir(tmp_path, model, count=64):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((count, 3, 6, 6)).astype(np.float32))
    return str(tmp_path)


def test_removed_constant_channel_is_compensated_in_the_consumer_bias(tmp_path):
    model = constant_channel()
    without = prepared(model, ["c1"], 0.2)
    Prune()(without)
    x = feeds(model)
    assert np.abs(run(without.model, x)[0] - run(model, x)[0]).max() > 0.1
    prog = prepared(model, ["c1"], 0.2, calibrate=calibration_dir(tmp_path, model))
    assert Prune()(prog).modified
    prog.verify()
    assert list(prog.node("c2").inputs[1].shape) == [4, 4, 1, 1]
    same_outputs(model, prog, tolerance=1e-4)


def test_bias_compensation_can_be_switched_off(tmp_path):
    model = constant_channel()
    prog = prepared(model, ["c1"], 0.2, calibrate=calibration_dir(tmp_path, model))
    Prune(bias_correction=False)(prog)
    x = feeds(model)
    assert np.abs(run(prog.model, x)[0] - run(model, x)[0]).max() > 0.1


def test_batchnorm_statistics_are_reestimated_on_the_pruned_model(tmp_path):
    model = constant_channel(tail_bn=True)
    calib = calibration_dir(tmp_path, model)
    prog = prepared(model, ["c1"], 0.4, calibrate=calib)
    Prune(bias_correction=False)(prog)
    bn2 = prog.node("bn2")
    conv_out = bn2.inputs[0]
    sess = session(prog.model, [conv_out])
    data = np.load(f"{calib}/x.npy")
    outs = np.concatenate([sess.run([conv_out.name], {"x": data[i:i + 1]})[0] for i in range(len(data))])
    mean, var = outs.mean(axis=(0, 2, 3)), outs.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn2.inputs[3].const_value.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn2.inputs[4].const_value.numpy(), var, rtol=1e-4, atol=1e-5)


def test_activation_ranking_uses_calibration(tmp_path):
    model = constant_channel()
    prog = prepared(model, ["c1"], 0.2, metric="activation", calibrate=calibration_dir(tmp_path, model))
    Prune()(prog)
    assert [(p.node, p.channels_after) for p in prog.pruning] == [("c1", 4)]
    # l1 would remove the zero filter first; its channel carries the constant 2, so by activation it stays
    assert np.any(np.all(prog.node("c1").inputs[1].const_value.numpy() == 0, axis=(1, 2, 3)))


def redundant_channel():
    """c1 (1x1, no activation) → c2 (1x1): c1's channel 3 is 0.01·(channel 0 + channel 1), a small filter
    L1 removes first and that least squares can rebuild exactly from the channels kept."""
    net = Net({"x": [1, 3, 6, 6]}, seed=8)
    w = net.rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    b = net.rng.standard_normal(4).astype(np.float32)
    w[3], b[3] = 0.01 * (w[0] + w[1]), 0.01 * (b[0] + b[1])
    y = net.op("Conv", "c1", ["x", net.const("c1.w", w), net.const("c1.b", b)])
    net.op("Conv", "c2", [y, net.weight("c2.w", 5, 4, 1, 1), net.weight("c2.b", 5)])
    return net.model(["c2"])


def test_least_squares_rebuilds_a_redundant_channel(tmp_path):
    model = redundant_channel()
    calib = calibration_dir(tmp_path, model, count=16)
    plain = prepared(model, ["c1"], 0.25, calibrate=calib)
    Prune()(plain)
    x = feeds(model)
    assert np.abs(run(plain.model, x)[0] - run(model, x)[0]).max() > 1e-3
    prog = prepared(model, ["c1"], 0.25, calibrate=calib)
    assert Prune(reconstruct=True)(prog).modified
    assert list(prog.node("c2").inputs[1].shape) == [5, 3, 1, 1]
    same_outputs(model, prog, tolerance=1e-3)


def test_im2col_rows_reproduce_a_strided_padded_convolution():
    from edgec.passes.prune.reconstruct import _patches

    net = Net({"x": [2, 3, 7, 7]}, seed=9)
    net.op("Conv", "c", ["x", net.weight("c.w", 4, 3, 3, 3)], pads=[1, 1, 1, 1], strides=[2, 2])
    model = net.model(["c"])
    prog = prepared(model, [], 0.0)
    x = feeds(model)["x"]
    y = run(model, {"x": x})[0]
    node = prog.node("c")
    rows, cols, batch = np.array([0, 3, 1, 2]), np.array([0, 3, 2, 0]), np.array([0, 1, 1, 0])
    got = _patches(x, node, rows, cols, batch) @ node.inputs[1].const_value.numpy().reshape(4, -1).T
    np.testing.assert_allclose(got, y[batch, :, rows, cols], rtol=1e-5, atol=1e-5)
