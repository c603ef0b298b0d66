"""Lowering (TVM side of the compiler): the LoweredModel's structure, the kernels' C, and the
one-line errors for bad models. Numerical accuracy is in test_compile_accuracy.py."""

import shutil
import subprocess

import numpy as np
import pytest

import model_builders
from conftest import fixture_path
from project_api.compiler import ir
from project_api.compiler.errors import CompileError, UnsupportedOperatorError
from project_api.compiler.lowering import lower_model
from project_api.naming import c_identifier

ONNX_MODELS = list(model_builders.ALL_BUILDERS)
BUILT_TFLITE = ["dw_pool_fc"]  # built by model_builders; needs no ../shared fixtures
TFLITE_FIXTURES = model_builders.TFLITE_FIXTURES
INT8_MODELS = ["sine_mlp_qdq", "small_cnn_qdq", "dw_pool_fc"] + model_builders.INT8_TFLITE_FIXTURES
ALL_MODELS = ONNX_MODELS + BUILT_TFLITE + TFLITE_FIXTURES

GCC_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-c"]
ARM_FLAGS = ["-std=c99", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
             "-Wall", "-Wextra", "-Werror", "-c"]


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    return model_builders.shared_model_dir(tmp_path_factory)


def model_file(name, onnx_dir):
    if name in ONNX_MODELS:
        return onnx_dir / f"{name}.onnx"
    if name in BUILT_TFLITE:
        return onnx_dir / f"{name}.tflite"
    return fixture_path("models", f"{name}.tflite")


def model_io_names(path):
    """Input and output names as the model file declares them (read without our frontend)."""
    if path.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(path)).graph
        initializers = {i.name for i in graph.initializer}
        return [v.name for v in graph.input if v.name not in initializers], [v.name for v in graph.output]
    import tflite

    subgraph = tflite.Model.GetRootAsModel(path.read_bytes(), 0).Subgraphs(0)
    names = lambda indices: [subgraph.Tensors(int(i)).Name().decode() for i in indices]  # noqa: E731
    return names(subgraph.InputsAsNumpy()), names(subgraph.OutputsAsNumpy())


# ------------------------------------------------------------------------------------ structure

@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_MODELS)
def test_lowered_model_structure(name, onnx_dir):
    path = model_file(name, onnx_dir)
    lowered = model_builders.lower_once(path)
    inputs, outputs = model_io_names(path)
    assert lowered.inputs == inputs and lowered.outputs == outputs
    assert [lowered.tensors[n].kind for n in inputs] == [ir.INPUT] * len(inputs)
    assert [lowered.tensors[n].kind for n in outputs] == [ir.OUTPUT] * len(outputs)
    assert lowered.calls, "no kernel calls"
    assert "def main" in lowered.source_text and lowered.target == "c"

    written = set()
    for index, call in enumerate(lowered.calls):
        assert call.func_name.startswith("tvmgen_default_") and c_identifier(call.func_name) == call.func_name
        assert set(call.writes) <= set(call.args) and call.writes, call
        for arg in call.args:
            tensor = lowered.tensors[arg]  # every argument is a storage tensor of the model
            if arg in call.writes:
                assert tensor.kind in (ir.INTERMEDIATE, ir.OUTPUT, ir.WORKSPACE), (index, arg)
                assert tensor.kind == ir.WORKSPACE or arg not in written, f"{arg} written twice"
            else:
                # calls are in execution order: a tensor is read only after a kernel wrote it
                assert tensor.kind in (ir.INPUT, ir.CONSTANT) or arg in written, (index, arg)
        written.update(call.writes)
    assert set(outputs) <= written
    for tensor in lowered.tensors.values():
        assert tensor.kind in ir.KINDS
        if tensor.kind == ir.CONSTANT:
            assert tensor.data.dtype == np.dtype(tensor.dtype) and tensor.data.shape == tensor.shape
        if tensor.kind == ir.INTERMEDIATE:
            assert tensor.name in written, f"intermediate {tensor.name} never written"


@pytest.mark.slow
@pytest.mark.parametrize("name", INT8_MODELS)
def test_int8_models_keep_weights_and_activations_int8(name, onnx_dir):
    path = model_file(name, onnx_dir)
    lowered = model_builders.lower_once(path)
    constants = [t for t in lowered.tensors.values() if t.kind == ir.CONSTANT]
    for tensor in constants:
        if len(tensor.shape) >= 2:  # weights; per-channel scales and biases are 1-D
            assert tensor.dtype == "int8", (tensor.name, tensor.dtype, tensor.shape)
    for tensor in lowered.tensors.values():
        if tensor.kind == ir.INTERMEDIATE:
            assert tensor.dtype == "int8", (tensor.name, tensor.dtype, tensor.shape)
    if path.suffix == ".tflite":
        # dequantized float32 weights would be ~4x the int8 weights stored in the file
        assert sum(t.nbytes for t in constants) < path.stat().st_size


@pytest.mark.slow
def test_tflite_frontend_workarounds_apply_to_a_built_model(onnx_dir):
    # The Relax import (which int8 models with an operator the integer path lacks still take).
    from project_api.compiler.frontend import load_model

    notes = " | ".join(load_model(model_file("dw_pool_fc", onnx_dir)).notes)
    assert "quantized_dimension 3 clamped" in notes  # depthwise bias, as in person_detect
    assert "FULLY_CONNECTED on rank-4 input" in notes  # as in micro_speech
    assert "AVERAGE_POOL_2D" in notes  # rounding, as in KWS


@pytest.mark.slow
def test_float_network_with_int8_output_keeps_one_kernel_per_layer(onnx_dir):
    lowered = model_builders.lower_once(model_file("sine_mlp_int8_output", onnx_dir))
    float_layers = model_builders.lower_once(model_file("sine_mlp", onnx_dir))
    assert len(lowered.calls) == len(float_layers.calls)  # the quantize joins the last layer only
    assert not [t for t in lowered.tensors.values() if t.kind == ir.WORKSPACE]
    assert lowered.tensors["y"].dtype == "int8"


@pytest.mark.slow
def test_frontend_workarounds_are_recorded(onnx_dir):
    from project_api.compiler.frontend import load_model

    speech = load_model(model_file("tflm_micro_speech_quantized", onnx_dir))
    assert any("FULLY_CONNECTED" in note for note in speech.notes)
    kws = load_model(model_file("mlperf_tiny_kws_ref_model_int8", onnx_dir))
    assert any("AVERAGE_POOL_2D" in note for note in kws.notes)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dw_pool_fc"] + model_builders.INT8_TFLITE_FIXTURES)
def test_int8_tflite_models_take_the_integer_path(name, onnx_dir):
    """No float arithmetic left in the kernels: int32 accumulation, fixed-point requantization."""
    lowered = model_builders.lower_once(model_file(name, onnx_dir))
    assert any("integer kernels" in note for note in lowered.notes)
    body = lowered.kernels_c.split("*/", 1)[1]
    assert "float" not in body and "nearbyint" not in body and "expf" not in body
    assert "mtp_requantize(" in body


@pytest.mark.slow
def test_outputs_aliasing_input_view_or_constant_get_copy_kernels(onnx_dir):
    path = onnx_dir / "passthrough.onnx"
    lowered = model_builders.lower_once(path)
    assert lowered.outputs == ["same", "flat", "weights"]
    sources = {call.writes[0]: call.args[0] for call in lowered.calls}
    assert sources["same"] == "x" and sources["flat"] == "x"
    assert lowered.tensors[sources["weights"]].kind == ir.CONSTANT
    assert lowered.tensors["flat"].shape == (1, 6) and lowered.tensors["same"].shape == (1, 2, 3)
    assert all(call.func_name in lowered.kernels_c for call in lowered.calls)


@pytest.mark.slow
def test_tensor_names_that_are_no_c_identifiers(onnx_dir, tmp_path):
    lowered = model_builders.lower_once(onnx_dir / "awkward_names.onnx")
    assert lowered.inputs == ["1st:input/x-1", "in.2"] and lowered.outputs == ["out put:0", "diff-0"]
    _compile("gcc", GCC_FLAGS, lowered.kernels_c, tmp_path)


@pytest.mark.slow
def test_tensor_names_that_are_c_keywords(tmp_path):
    lowered = lower_model(model_builders.build_keyword_names_model(tmp_path / "keywords.onnx"))
    assert lowered.inputs == ["int"] and lowered.outputs == ["float"]
    _compile("gcc", GCC_FLAGS, lowered.kernels_c, tmp_path)


# ------------------------------------------------------------------------------------ kernel C

def _compile(compiler, flags, source, out_dir):
    c_file = out_dir / "kernels.c"
    c_file.write_text(source)
    result = subprocess.run([compiler, *flags, str(c_file), "-o", str(out_dir / "kernels.o")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return out_dir / "kernels.o"


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_MODELS)
def test_kernel_c_compiles_warning_free(name, onnx_dir, tmp_path):
    lowered = model_builders.lower_once(model_file(name, onnx_dir))
    assert "#include \"" not in lowered.kernels_c and "__tvm_ffi" not in lowered.kernels_c
    for call in lowered.calls:
        assert f"int32_t {call.func_name}(" in lowered.kernels_c
    _compile("gcc", GCC_FLAGS, lowered.kernels_c, tmp_path)
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    _compile("arm-none-eabi-gcc", ARM_FLAGS, lowered.kernels_c, tmp_path)


@pytest.mark.slow
def test_two_models_link_into_one_program(onnx_dir, tmp_path):
    path = model_file("sine_mlp", onnx_dir)
    objects = []
    for model_name in ("sine-a", "sine b"):
        lowered = model_builders.lower_once(path, model_name)
        assert all(c.func_name.startswith(f"tvmgen_{c_identifier(model_name)}_") for c in lowered.calls)
        directory = tmp_path / c_identifier(model_name)
        directory.mkdir()
        objects.append(_compile("gcc", GCC_FLAGS, lowered.kernels_c, directory))
    # A relocatable link fails on any symbol both objects define.
    result = subprocess.run(["gcc", "-r", "-nostdlib", *map(str, objects), "-o", str(tmp_path / "both.o")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_large_kernel_scratch_becomes_a_workspace_parameter():
    import tvm
    from tvm import relax

    from project_api.compiler._tvm_c_kernels import STACK_LIMIT_BYTES, build_c_kernels

    builder = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16), "float32"))
    w = relax.Var("w", relax.TensorType((16, 512), "float32"))
    with builder.function("main", [x, w]):
        with builder.dataflow():
            product = builder.emit(relax.op.matmul(x, w))
            result = builder.emit_output(relax.op.nn.relu(product))
        builder.emit_func_output(result)
    with tvm.target.Target("c"):
        mod = tvm.transform.Sequential([relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                                        relax.transform.FuseOps(), relax.transform.FuseTIR()])(builder.get())
    funcs = {f"k_{gv.name_hint}": f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}
    assert len(funcs) == 1  # also exercises the one-function module case
    source, kernels = build_c_kernels(funcs)
    (kernel,) = kernels.values()
    assert kernel.workspaces == [("float32", 512)] and 512 * 4 >= STACK_LIMIT_BYTES
    assert f"int32_t {kernel.symbol}(float* x, float* w, float* compute_intermediate, float* workspace_0)" in source


@pytest.mark.slow
def test_llvm_target_and_mcpu_are_recorded(onnx_dir):
    target = '{"kind": "llvm", "mtriple": "thumbv7em-none-eabihf", "mcpu": "cortex-m4"}'
    lowered = lower_model(model_file("sine_mlp", onnx_dir), model_name="m4", target=target, mcpu="cortex-m4")
    assert '"thumbv7em-none-eabihf"' in lowered.target and '"kind": "llvm"' in lowered.target
    assert any("cortex-m4" in note for note in lowered.notes)
    assert "int32_t tvmgen_m4_" in lowered.kernels_c  # kernels are C source whatever the target


# ------------------------------------------------------------------------------------ errors

def _one_line(err):
    message = str(err.value)
    assert "\n" not in message and message, message
    return message


def test_unknown_extension(tmp_path):
    path = tmp_path / "model.pb"
    path.write_bytes(b"not a model")
    with pytest.raises(CompileError) as err:
        lower_model(path)
    message = _one_line(err)
    assert "'.pb'" in message and ".onnx" in message and ".tflite" in message


def test_missing_file(tmp_path):
    with pytest.raises(CompileError) as err:
        lower_model(tmp_path / "absent.tflite")
    assert "absent.tflite" in _one_line(err)


def test_invalid_target_is_refused(tmp_path):
    with pytest.raises(CompileError) as err:
        lower_model(tmp_path / "whatever.onnx", target='{"kind": "cuda"}')
    assert "cuda" in _one_line(err)


def test_truncated_tflite(tmp_path):
    data = fixture_path("models", "tflm_micro_speech_quantized.tflite").read_bytes()
    for size in (len(data) // 2, 40, 6):
        path = tmp_path / f"cut{size}.tflite"
        path.write_bytes(data[:size])
        with pytest.raises(CompileError) as err:
            lower_model(path)
        message = _one_line(err)
        assert str(path) in message and "not a valid TFLite model" in message


def test_truncated_onnx(onnx_dir, tmp_path):
    data = model_file("small_cnn", onnx_dir).read_bytes()
    for size in (len(data) // 2, len(data) - 3, 10):
        path = tmp_path / f"cut{size}.onnx"
        path.write_bytes(data[:size])
        with pytest.raises(CompileError) as err:
            lower_model(path)
        message = _one_line(err)
        assert str(path) in message and "not a valid ONNX model" in message


def test_hybrid_tflite_is_refused():
    path = fixture_path("models", "mlperf_tiny_kws_ref_model_float32.tflite")
    with pytest.raises(CompileError) as err:
        lower_model(path)
    message = _one_line(err)
    assert "hybrid" in message and "full-integer" in message and path.name in message


def test_unsupported_onnx_operator(tmp_path):
    path = model_builders.build_unsupported_op_model(tmp_path / "det.onnx", op_type="Det", node_name="my_det")
    with pytest.raises(UnsupportedOperatorError) as err:
        lower_model(path)
    message = _one_line(err)
    assert "Det" in message and "my_det" in message
