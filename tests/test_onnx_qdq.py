"""ONNX QDQ int8 models on the integer path (project_api/compiler/onnx_qdq.py): within 1 LSB of
onnxruntime (which computes the QDQ graph in float and rounds half to even), and exactly the same
outputs natively on the host and on emulated Cortex-M4 / Cortex-M3 cores."""

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import model_builders
from cortex_m_helpers import needs_arm_tools
from project_api.compiler.lowering import lower_model
from project_api.compiler.mlf import export_mlf
from project_api.compiler.native import NativeModel
from project_helpers import tvmc

RUNS = 20


def onnxruntime_outputs(path, inputs):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x})[0] for x in inputs]


def output_step(path) -> float:
    """The scale of the DequantizeLinear producing the model output: one LSB of it."""
    graph = onnx.load(str(path)).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    node = next(n for n in graph.node if graph.output[0].name in n.output)
    return float(constants[node.input[1]])


def lsb_from_onnxruntime(path, tmp_path, input_shape, seed=3):
    """|ours - onnxruntime| in output LSBs, every output element of RUNS random inputs."""
    lowered = lower_model(path, model_name=path.stem)
    assert lowered.notes[0].startswith("int8 ONNX QDQ model lowered to integer kernels"), lowered.notes
    rng = np.random.default_rng(seed)
    inputs = [rng.uniform(-1, 1, input_shape).astype(np.float32) for _ in range(RUNS)]
    with NativeModel(export_mlf(lowered, tmp_path / f"{path.stem}.tar")) as native:
        ours = [outputs[0] for outputs in native.run_many([[x] for x in inputs])]
    reference = onnxruntime_outputs(path, inputs)
    step = output_step(path)
    return np.round(np.concatenate([np.abs(o - r).ravel() for o, r in zip(ours, reference)]) / step), lowered


def assert_close_to_onnxruntime(lsb, label):
    """Each requantizing layer rounds differently (fixed point, half away from zero, vs float, half
    to even) and may differ by 1 LSB; downstream layers can turn such a difference into 2 at the
    output (a layer with a gain above one), rarely."""
    assert lsb.max() <= 2, f"{label}: {lsb.max():.0f} LSB from onnxruntime"
    assert np.mean(lsb <= 1) >= 0.99, f"{label}: {np.mean(lsb > 1):.2%} of the outputs more than 1 LSB off"


@pytest.mark.parametrize("name, shape", [("small_cnn_qdq", model_builders.CNN_INPUT_SHAPE), ("sine_mlp_qdq", (1, 1))])
def test_qdq_model_is_within_one_lsb_of_onnxruntime(name, shape, tmp_path):
    path = model_builders.ALL_BUILDERS[name](tmp_path / f"{name}.onnx")
    lsb, lowered = lsb_from_onnxruntime(path, tmp_path, shape)
    assert_close_to_onnxruntime(lsb, name)
    # Integer kernels only: no float kernel between the QUANTIZE and the DEQUANTIZE.
    kinds = [re.search(r"_q\d+_(\w+)$", call.func_name).group(1) for call in lowered.calls]
    assert kinds[0] == "quantize" and kinds[-1] == "dequantize"
    assert all(lowered.tensors[t].dtype in ("int8", "int32", "int64") for call in lowered.calls[1:-1]
               for t in call.args if lowered.tensors[t].kind != "input")


def _depthwise_qdq_model(path):
    """[1,3,8,8] -> depthwise 3x3 (group 3, stride 2, pads 1: not TFLite SAME, so an explicit PAD)
    + relu -> Flatten of a 4x4 spatial tensor (NCHW order: a transpose back) -> Gemm(5)."""
    rng = np.random.default_rng(0)
    g = model_builders._Graph()
    x = model_builders._qdq(g, "x", 0.01)
    w, w_scale = model_builders._quantized_weight(g, rng.normal(0, 0.5, (3, 1, 3, 3)).astype(np.float32), True)
    b = model_builders._quantized_bias(g, rng.normal(0, 0.1, 3).astype(np.float32), 0.01, w_scale)
    y = g.node("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], group=3)
    y = model_builders._qdq(g, g.node("Relu", [y]), 0.01)
    y = model_builders._qdq(g, g.node("Flatten", [y], axis=1), 0.01)
    w2, w2_scale = model_builders._quantized_weight(g, rng.normal(0, 0.3, (5, 48)).astype(np.float32), False)
    b2 = model_builders._quantized_bias(g, rng.normal(0, 0.1, 5).astype(np.float32), 0.01, w2_scale)
    y = model_builders._qdq(g, g.node("Gemm", [y, w2, b2], transB=1), 0.02)
    g.nodes[-1].output[0] = "y"
    graph = helper.make_graph(g.nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", model_builders.OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_qdq_depthwise_padding_and_spatial_flatten(tmp_path):
    path = _depthwise_qdq_model(tmp_path / "dw.onnx")
    lsb, lowered = lsb_from_onnxruntime(path, tmp_path, (1, 3, 8, 8))
    assert_close_to_onnxruntime(lsb, "depthwise model")
    names = [call.func_name for call in lowered.calls]
    assert any(n.endswith("_pad") for n in names) and any(n.endswith("_depthwise_conv2d") for n in names)


def _one_conv_qdq_model(path):
    """One requantizing layer: [1,2,8,8] -> conv 3x3 (4 channels, per-channel weights) + relu ->
    Flatten (data movement only)."""
    rng = np.random.default_rng(1)
    g = model_builders._Graph()
    x = model_builders._qdq(g, "x", 0.01)
    w, w_scale = model_builders._quantized_weight(g, rng.normal(0, 0.3, (4, 2, 3, 3)).astype(np.float32), True)
    b = model_builders._quantized_bias(g, rng.normal(0, 0.1, 4).astype(np.float32), 0.01, w_scale)
    y = model_builders._qdq(g, g.node("Relu", [g.node("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]), 0.006)
    model_builders._qdq(g, g.node("Flatten", [y], axis=1), 0.006)
    g.nodes[-1].output[0] = "y"
    graph = helper.make_graph(g.nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", model_builders.OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_one_requantizing_layer_is_within_one_lsb_of_onnxruntime(tmp_path):
    lsb, _ = lsb_from_onnxruntime(_one_conv_qdq_model(tmp_path / "conv.onnx"), tmp_path, (1, 2, 8, 8))
    assert lsb.max() <= 1, f"{lsb.max():.0f} LSB from onnxruntime"


def test_float_onnx_model_keeps_the_relax_path(tmp_path):
    path = model_builders.build_small_cnn(tmp_path / "cnn.onnx")
    assert not any("integer kernels" in note for note in lower_model(path).notes)


@needs_arm_tools
@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2_an386", "mps2_an385"])
def test_qdq_cnn_on_qemu_equals_the_host_run(board, tmp_path):
    """Host-driven firmware (-Werror, the board's -mcpu: DSP micro-kernels on the M4, portable C on
    the M3) over a real RPC session: outputs identical to the native host run."""
    from project_api.cli._options import options_for_project, project_api_server
    from project_api.rpc.transport import ProjectAPITransport
    from project_api.session import Session

    path = model_builders.build_small_cnn_qdq(tmp_path / "cnn_qdq.onnx")
    mlf = export_mlf(lower_model(path), tmp_path / "model.tar")
    project = tmp_path / "project"
    tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", f"board={board}",
         "project_type=host_driven", "warning_as_error=true")
    tvmc("micro", "build", project, "cortex_m")
    tvmc("micro", "flash", project, "cortex_m")
    rng = np.random.default_rng(5)
    inputs = [rng.uniform(-1, 1, model_builders.CNN_INPUT_SHAPE).astype(np.float32) for _ in range(4)]
    with project_api_server(project) as api:
        with Session(ProjectAPITransport(api, options_for_project(project, {})), run_timeout_sec=120) as session:
            device = []
            for x in inputs:
                session.set_input(0, x)
                session.run()
                device.append(session.get_output(0))
    with NativeModel(mlf) as native:
        host = [outputs[0] for outputs in native.run_many([[x] for x in inputs])]
    for d, h in zip(device, host):
        np.testing.assert_array_equal(d, h)
