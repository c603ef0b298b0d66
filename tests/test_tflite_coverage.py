"""Model coverage (issue 14): TFLite models whose tensors carry no names, and the int8 operators
of tflite-micro beyond the convolutional core, each compiled, run natively (host gcc) and compared
with the tflite-micro PyPI interpreter (its reference kernels) bit for bit."""

import numpy as np
import pytest

import model_builders
from project_api.compiler.tflite_writer import FLOAT32, INT8, INT16, INT32, TFLiteWriter
from project_api.compiler.lowering import lower_model
from project_api.compiler.mlf import export_mlf
from project_api.compiler.native import NativeModel
from project_helpers import needs_cc


def tflite_micro_outputs(path, inputs_per_run, outputs: int = 1):
    """Every output of every run, from one tflite-micro interpreter (state persists across runs)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(path))
    results = []
    for run in inputs_per_run:
        for index, x in enumerate(run):
            interpreter.set_input(x, index)
        interpreter.invoke()
        results.append([np.array(interpreter.get_output(k)).copy() for k in range(outputs)])
    return results


def native_outputs(lowered, tmp_path, inputs_per_run):
    mlf = export_mlf(lowered, tmp_path / f"{lowered.name}.tar")
    with NativeModel(mlf) as native:
        return native.run_many(inputs_per_run)


def random_int8(rng, shape):
    return rng.integers(-128, 127, shape, endpoint=True).astype(np.int8)


# ------------------------------------------------------------------------------ unnamed tensors

def test_model_with_every_name_stripped_compiles_bit_exact(tmp_path):
    path = model_builders.build_tflite_dw_pool_fc_int8(tmp_path / "unnamed.tflite", names=False)
    lowered = lower_model(path, model_name="unnamed")
    assert (lowered.inputs, lowered.outputs) == (["input_0"], ["output_0"])
    assert "integer kernels" in lowered.notes[0]
    rng = np.random.default_rng(3)
    inputs = [[random_int8(rng, (1, 8, 8, 4))] for _ in range(4)]
    ours = native_outputs(lowered, tmp_path, inputs)
    reference = tflite_micro_outputs(path, inputs)
    for o, r in zip(ours, reference):
        np.testing.assert_array_equal(o[0], r[0])


def test_unnamed_model_takes_the_relax_path_too(tmp_path):
    path = model_builders.build_tflite_dw_pool_fc_int8(tmp_path / "unnamed.tflite", names=False)
    lowered = lower_model(path, integer_kernels=False)
    assert (lowered.inputs, lowered.outputs) == (["input_0"], ["output_0"])
    assert len(lowered.calls) == 3


# ------------------------------------------------------------------------------ refusals and the table

def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_unsupported_tflite_operator_is_refused_naming_op_node_and_alternative(tmp_path):
    from project_api.compiler.errors import UnsupportedOperatorError

    w = TFLiteWriter()
    a, u = w.tensor("a", [1, 8], FLOAT32), w.tensor("u", [1, 2], FLOAT32)
    start = w.const("start", [0, 3])
    out = w.tensor("updated", [1, 8], FLOAT32)
    w.operator("DYNAMIC_UPDATE_SLICE", [a, u, start], [out])
    path = w.save(tmp_path / "dus.tflite", [a, u], [out])
    with pytest.raises(UnsupportedOperatorError) as err:
        lower_model(path)
    message = _one_line(err)
    assert "DYNAMIC_UPDATE_SLICE" in message and "'updated'" in message
    assert "nearest supported: STRIDED_SLICE" in message


def test_int8_operator_neither_path_takes_is_refused(tmp_path):
    """int8 ELU: no integer kernel, and TVM's frontend does not import it quantized."""
    from project_api.compiler.errors import UnsupportedOperatorError

    path = one_op_model(tmp_path / "elu.tflite", "ELU", [((1, 8), INT8, (0.05, 3))], [((1, 8), INT8, (0.05, 3))])
    with pytest.raises(UnsupportedOperatorError) as err:
        lower_model(path)
    message = _one_line(err)
    assert "ELU" in message and "(int8)" in message and "'out0'" in message and "nearest supported: LEAKY_RELU" in message


@pytest.mark.parametrize("op_type, alternative", [("Celu", "Elu"), ("Det", "no equivalent")])
def test_unsupported_onnx_operator_names_the_nearest_alternative(op_type, alternative, tmp_path):
    from project_api.compiler.errors import UnsupportedOperatorError

    path = model_builders.build_unsupported_op_model(tmp_path / "op.onnx", op_type=op_type, node_name="the_node")
    with pytest.raises(UnsupportedOperatorError) as err:
        lower_model(path)
    message = _one_line(err)
    assert op_type in message and "'the_node'" in message and f"nearest supported: {alternative}" in message


def test_operator_table_in_docs_is_generated_from_the_code():
    from conftest import REPO_ROOT
    from project_api.compiler import operators

    documented = (REPO_ROOT / "docs" / "operators.md").read_text()
    assert documented == operators.render_markdown(), (
        "docs/operators.md is stale: run `python -m project_api.compiler.operators > docs/operators.md`")


def test_table_lists_the_builtins_tflite_micro_registers():
    """The table's operator list is the installed tflite-micro interpreter's: the Register_<OP>
    functions in its extension module's symbols, custom operators aside."""
    import re
    from pathlib import Path

    import tflite_micro.python.tflite_micro as package
    from project_api.compiler.operators import TFLITE_MICRO_BUILTINS, TFLITE_MICRO_CUSTOM

    library = next(Path(package.__path__[0]).glob("_runtime*.so"))
    registered = set(re.findall(rb"5micro\d+Register_([A-Z0-9_]+)Ev", library.read_bytes()))
    registered = {name.decode() for name in registered} - set(TFLITE_MICRO_CUSTOM)
    assert registered == set(TFLITE_MICRO_BUILTINS)


# ------------------------------------------------------------------------------ int8 operators
# One-operator models; elementwise operators get all 256 int8 values as input (exhaustive), the
# others random tensors. Each must take the integer path and equal tflite-micro bit for bit.

EVERY_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
INPUT_QUANTIZATIONS = [(0.05, 3), (0.1, -20), (0.02, 100), (0.3, -128)]


def compare_with_tflite_micro(path, inputs_per_run, tmp_path, outputs: int = 1):
    """Max |ours - tflite-micro| over every output and run (after checking the integer path)."""
    lowered = lower_model(path, model_name=path.stem)
    assert lowered.notes and "integer kernels" in lowered.notes[0], f"{path.name} took the Relax path"
    ours = native_outputs(lowered, tmp_path, inputs_per_run)
    reference = tflite_micro_outputs(path, inputs_per_run, outputs)
    difference = 0.0
    for o_run, r_run in zip(ours, reference):
        for o, r in zip(o_run, r_run):
            assert o.shape == r.shape and o.dtype == r.dtype
            difference = max(difference, float(np.abs(o.astype(np.float64) - r.astype(np.float64)).max()))
    return difference


def one_op_model(path, op, inputs, outputs, options=None, constants=()):
    """``inputs`` / ``outputs``: (shape, dtype, quantization or None); ``constants``: (data, dtype,
    quantization or None) operands placed after the inputs."""
    w = TFLiteWriter()
    ins = [w.tensor(f"in{k}", shape, dtype, *(q or (None,))) for k, (shape, dtype, q) in enumerate(inputs)]
    consts = [w.const(f"c{k}", data, dtype, **({"scale": q[0], "zero_point": q[1]} if q else {}))
              for k, (data, dtype, q) in enumerate(constants)]
    outs = [w.tensor(f"out{k}", shape, dtype, *(q or (None,))) for k, (shape, dtype, q) in enumerate(outputs)]
    w.operator(op, ins + consts, outs, options)
    return w.save(path, ins, outs)


UNARY = {
    "LOGISTIC": ((1 / 256, -128), None),
    "TANH": ((1 / 128, 0), None),
    "HARD_SWISH": ((0.03, -30), None),
    "LEAKY_RELU": ((0.04, 5), ("LeakyReluOptions", {"Alpha": 0.2})),
    "QUANTIZE": ((0.07, -9), None),
}


@pytest.mark.parametrize("op", list(UNARY))
def test_elementwise_int8_operator_is_bit_exact_on_every_input(op, tmp_path):
    output_q, options = UNARY[op]
    for k, input_q in enumerate(INPUT_QUANTIZATIONS):
        path = one_op_model(tmp_path / f"{op.lower()}{k}.tflite", op, [((1, 256), INT8, input_q)],
                            [((1, 256), INT8, output_q)], options)
        assert compare_with_tflite_micro(path, [[EVERY_INT8]], tmp_path) == 0, f"{op} input {input_q}"


def test_dequantize_and_float_quantize_are_bit_exact(tmp_path):
    path = one_op_model(tmp_path / "dequantize.tflite", "DEQUANTIZE", [((1, 256), INT8, (0.05, 3))],
                        [((1, 256), FLOAT32, None)])
    assert compare_with_tflite_micro(path, [[EVERY_INT8]], tmp_path) == 0
    path = one_op_model(tmp_path / "quantize.tflite", "QUANTIZE", [((1, 256), FLOAT32, None)],
                        [((1, 256), INT8, (0.05, 3))])
    # Values across the int8 range and beyond, and exact halves of the step (rounding).
    x = np.concatenate([np.linspace(-8, 8, 128), (np.arange(-64, 64) + 0.5) * 0.05]).astype(np.float32)
    assert compare_with_tflite_micro(path, [[x.reshape(1, 256)]], tmp_path) == 0


Q = (0.05, 3)
SHAPE = (1, 4, 5, 3)
DATA_MOVEMENT = {
    "PAD": ([(SHAPE, INT8, Q)], [((1, 7, 7, 4), INT8, Q)], None,
            [([[0, 0], [1, 2], [2, 0], [0, 1]], INT32, None)]),
    "PADV2": ([(SHAPE, INT8, Q)], [((1, 7, 7, 4), INT8, Q)], None,
              [([[0, 0], [1, 2], [2, 0], [0, 1]], INT32, None), ([-7], INT8, Q)]),
    "TRANSPOSE": ([(SHAPE, INT8, Q)], [((1, 3, 4, 5), INT8, Q)], None, [([0, 3, 1, 2], INT32, None)]),
    "CONCATENATION": ([(SHAPE, INT8, Q), ((1, 4, 5, 2), INT8, Q)], [((1, 4, 5, 5), INT8, Q)],
                      ("ConcatenationOptions", {"Axis": -1}), []),
    "STRIDED_SLICE": ([(SHAPE, INT8, Q)], [((1, 2, 2, 3), INT8, Q)], ("StridedSliceOptions", {}),
                      [([0, 1, -1, 0], INT32, None), ([1, 4, 0, 3], INT32, None), ([1, 2, -2, 1], INT32, None)]),
    "SLICE": ([(SHAPE, INT8, Q)], [((1, 2, 3, 2), INT8, Q)], None,
              [([0, 1, 2, 1], INT32, None), ([1, 2, -1, 2], INT32, None)]),
    "SPLIT_V": ([(SHAPE, INT8, Q)], [((1, 4, 2, 3), INT8, Q), ((1, 4, 3, 3), INT8, Q)], ("SplitVOptions", {"NumSplits": 2}),
                [([2, 3], INT32, None), ([2], INT32, None)]),
    "PRELU": ([(SHAPE, INT8, Q)], [(SHAPE, INT8, (0.03, -10))], None,
              [([[[-50, 20, 100]]], INT8, (0.004, -2))]),
    "MEAN": ([((1, 7, 7, 3), INT8, Q)], [((1, 1, 1, 3), INT8, (0.02, -7))], ("ReducerOptions", {"KeepDims": True}),
             [([1, 2], INT32, None)]),
}


@pytest.mark.parametrize("op", list(DATA_MOVEMENT))
def test_int8_operator_is_bit_exact(op, tmp_path):
    inputs, outputs, options, constants = DATA_MOVEMENT[op]
    path = one_op_model(tmp_path / f"{op.lower()}.tflite", op, inputs, outputs, options, constants)
    rng = np.random.default_rng(1)
    runs = [[random_int8(rng, shape) for shape, _, _ in inputs] for _ in range(3)]
    assert compare_with_tflite_micro(path, runs, tmp_path, len(outputs)) == 0


def test_split_and_shrinking_strided_slice(tmp_path):
    """SPLIT (axis operand first, one kernel per output) and a strided slice with begin/end masks
    and a shrunk axis, in one model with two outputs."""
    w = TFLiteWriter()
    x = w.tensor("x", [1, 4, 6, 3], INT8, *Q)
    axis = w.const("axis", [2])
    left, right = w.tensor("left", [1, 4, 3, 3], INT8, *Q), w.tensor("right", [1, 4, 3, 3], INT8, *Q)
    w.operator("SPLIT", [axis, x], [left, right], ("SplitOptions", {"NumSplits": 2}))
    begin, end, strides = w.const("b", [0, 1, 0, 1]), w.const("e", [1, 3, 3, 2]), w.const("s", [1, 1, 1, 1])
    row = w.tensor("row", [1, 2, 3], INT8, *Q)
    w.operator("STRIDED_SLICE", [right, begin, end, strides], [row],
               ("StridedSliceOptions", {"BeginMask": 4, "EndMask": 4, "ShrinkAxisMask": 8}))
    path = w.save(tmp_path / "split.tflite", [x], [left, row])
    rng = np.random.default_rng(2)
    runs = [[random_int8(rng, (1, 4, 6, 3))] for _ in range(3)]
    assert compare_with_tflite_micro(path, runs, tmp_path, 2) == 0


def test_float_interface_around_an_int8_network(tmp_path):
    """float32 in -> QUANTIZE -> PAD -> HARD_SWISH -> MEAN -> LOGISTIC -> DEQUANTIZE -> float32 out,
    with unnamed tensors: the converter's usual float interface takes the integer path too."""
    w = TFLiteWriter(names=False)
    x = w.tensor("x", [1, 6, 6, 4], FLOAT32)
    q = w.tensor("q", [1, 6, 6, 4], INT8, 0.02, -4)
    padded = w.tensor("p", [1, 8, 8, 4], INT8, 0.02, -4)
    swished = w.tensor("h", [1, 8, 8, 4], INT8, 0.015, -60)
    mean = w.tensor("m", [1, 1, 1, 4], INT8, 0.01, -20)
    sig = w.tensor("s", [1, 1, 1, 4], INT8, 1 / 256, -128)
    y = w.tensor("y", [1, 1, 1, 4], FLOAT32)
    w.operator("QUANTIZE", [x], [q])
    w.operator("PAD", [q, w.const("pads", [[0, 0], [1, 1], [1, 1], [0, 0]])], [padded])
    w.operator("HARD_SWISH", [padded], [swished])
    w.operator("MEAN", [swished, w.const("axes", [1, 2])], [mean], ("ReducerOptions", {"KeepDims": True}))
    w.operator("LOGISTIC", [mean], [sig])
    w.operator("DEQUANTIZE", [sig], [y])
    path = w.save(tmp_path / "float_io.tflite", [x], [y])
    rng = np.random.default_rng(4)
    runs = [[rng.uniform(-3, 3, (1, 6, 6, 4)).astype(np.float32)] for _ in range(4)]
    assert compare_with_tflite_micro(path, runs, tmp_path) == 0


# ------------------------------------------------------------------------------ SVDF (state kept across runs)

def svdf_model(path, batches=1, inputs=12, filters=8, memory=5, rank=2, seed=0):
    """int8 SVDF as in tflite-micro's keyword examples: int8 input and feature weights, int16 time
    weights and int16 state (a variable tensor), int32 bias at state scale x time scale."""
    rng = np.random.default_rng(seed)
    state_scale, time_scale = 0.002, 0.0005
    w = TFLiteWriter()
    x = w.tensor("x", [batches, inputs], INT8, 0.05, 3)
    feature = w.const("feature", rng.integers(-127, 128, (filters, inputs)), INT8, scale=0.01, zero_point=0)
    time = w.const("time", rng.integers(-2000, 2000, (filters, memory)), INT16, scale=time_scale, zero_point=0)
    bias = w.const("bias", rng.integers(-500, 500, (filters // rank,)), INT32, scale=state_scale * time_scale, zero_point=0)
    state = w.tensor("state", [batches, filters * memory], INT16, state_scale, 0, variable=True)
    y = w.tensor("y", [batches, filters // rank], INT8, 0.03, -5)
    w.operator("SVDF", [x, feature, time, bias, state], [y], ("SVDFOptions", {"Rank": rank}))
    return w.save(path, [x], [y])


@pytest.mark.parametrize("shape", [dict(), dict(rank=1), dict(batches=2, memory=3)])
def test_svdf_is_bit_exact_over_successive_runs(shape, tmp_path):
    """Eight invocations in one process: the state carries each run's history into the next."""
    path = svdf_model(tmp_path / "svdf.tflite", **shape)
    rng = np.random.default_rng(6)
    runs = [[random_int8(rng, (shape.get("batches", 1), 12))] for _ in range(8)]
    assert compare_with_tflite_micro(path, runs, tmp_path) == 0


def test_svdf_state_lives_outside_the_arena_with_a_reset(tmp_path):
    from project_api.compiler.mlf import read_metadata
    from project_api.compiler.runtime_gen import generate_runtime

    lowered = lower_model(svdf_model(tmp_path / "svdf.tflite"), model_name="kws")
    runtime = generate_runtime(lowered)
    assert "#define TVMGEN_KWS_STATE_SIZE 80" in runtime.header
    assert "void tvmgen_kws_reset(void);" in runtime.header
    assert all(p.kind != "state" for p in runtime.plan.placements)
    mlf = export_mlf(lowered, tmp_path / "kws.tar")
    ours = read_metadata(mlf)["ours"]
    assert ours["reset_function"] == "tvmgen_kws_reset" and ours["memory"]["state_bytes"] == 80
    from project_api import project_gen

    assert "run_model, tvmgen_kws_reset," in project_gen.model_glue_source(project_gen.read_mlf(mlf))


@needs_cc
def test_svdf_on_the_host_board_over_rpc_with_reset(tmp_path_factory, tmp_path):
    """A built host-board project (the device runtime over the RPC): three runs equal
    tflite-micro's, RESET_STATE zeroes the state, and the same inputs then give the same outputs."""
    from project_api import client
    from project_api.rpc.transport import ProjectAPITransport
    from project_api.session import Session
    from rpc_test_device import host_project

    path = svdf_model(tmp_path / "svdf.tflite")
    mlf = export_mlf(lower_model(path, model_name="svdf"), tmp_path / "svdf.tar")
    project = host_project(tmp_path_factory, "svdf", mlf)
    rng = np.random.default_rng(8)
    runs = [[random_int8(rng, (1, 12))] for _ in range(3)]
    reference = tflite_micro_outputs(path, runs)
    with client.instantiate_from_dir(project) as api, Session(ProjectAPITransport(api)) as session:
        def infer(x):
            session.set_input(0, x)
            session.run()
            return session.get_output(0)

        first = [infer(run[0]) for run in runs]
        session.reset_state()
        again = [infer(run[0]) for run in runs]
    for ours, theirs, after_reset in zip(first, reference, again):
        np.testing.assert_array_equal(ours, theirs[0])
        np.testing.assert_array_equal(after_reset, theirs[0])
    # Without the reset, the same inputs again give other outputs: the state matters.
    continued = tflite_micro_outputs(path, runs + runs)[len(runs):]
    assert any(not np.array_equal(c[0], r[0]) for c, r in zip(continued, reference))
