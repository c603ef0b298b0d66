"""Model coverage (issue 14): TFLite models whose tensors carry no names, and the int8 operators
of tflite-micro beyond the convolutional core, each compiled, run natively (host gcc) and compared
with the tflite-micro PyPI interpreter (its reference kernels) bit for bit."""

import numpy as np
import pytest

import model_builders
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
