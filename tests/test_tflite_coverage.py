"""Model coverage (issue 14): TFLite models whose tensors carry no names, and the int8 operators
of tflite-micro beyond the convolutional core, each compiled, run natively (host gcc) and compared
with the tflite-micro PyPI interpreter (its reference kernels) bit for bit."""

import numpy as np
import pytest

import model_builders
from tflite_writer import FLOAT32, INT8, INT16, INT32, TFLiteWriter
from project_api.compiler.lowering import lower_model
from project_api.compiler.mlf import export_mlf
from project_api.compiler.native import NativeModel


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
