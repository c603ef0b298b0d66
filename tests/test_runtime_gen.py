"""The static-runtime generator: header contract, warning-free C for host and Cortex-M4, exact weights."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from lowered_samples import float_mlp, int8_dense
from project_api.compiler.errors import CompileError
from project_api.compiler.ir import INPUT, OUTPUT, KernelCall, LoweredModel, Tensor
from project_api.compiler.runtime_gen import c_literals, generate_runtime

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
ARM = ["arm-none-eabi-gcc", *STRICT, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


def _write(runtime, tmp_path):
    runtime.write(tmp_path / "include", tmp_path / "src")
    return sorted((tmp_path / "src").glob("*.c"))


def _compile_objects(compiler_argv, sources, tmp_path, tag):
    objects = []
    for source in sources:
        obj = tmp_path / f"{source.stem}.{tag}.o"
        subprocess.run([*compiler_argv, "-pedantic", "-I", str(tmp_path / "include"), "-c", str(source), "-o", str(obj)],
                       check=True, capture_output=True, text=True)
        objects.append(obj)
    return objects


def test_header_follows_contract_2():
    model = float_mlp()
    header = generate_runtime(model).header
    assert "#ifndef TVMGEN_SAMPLE_MLP_H_" in header and "#define TVMGEN_SAMPLE_MLP_H_" in header
    assert "#include <stdint.h>" in header
    assert '#ifdef __cplusplus\nextern "C" {\n#endif' in header
    assert "#define TVMGEN_SAMPLE_MLP_INPUT_0_SIZE 32\n" in header
    assert "#define TVMGEN_SAMPLE_MLP_BIAS_IN_SIZE 64\n" in header
    assert "#define TVMGEN_SAMPLE_MLP_OUT_LOGITS_SIZE 16\n" in header
    assert "#define TVMGEN_SAMPLE_MLP_OUT_RELU_SIZE 64\n" in header
    assert "#define TVMGEN_SAMPLE_MLP_WORKSPACE_SIZE 128\n" in header
    assert re.search(r"struct tvmgen_sample_mlp_inputs \{\n  void\* input_0;\n  void\* bias_in;\n\};", header)
    assert re.search(r"struct tvmgen_sample_mlp_outputs \{\n  void\* out_logits;\n  void\* out_relu;\n\};", header)
    assert ("int32_t tvmgen_sample_mlp_run(struct tvmgen_sample_mlp_inputs* inputs, "
            "struct tvmgen_sample_mlp_outputs* outputs);") in header


def test_header_is_valid_cplusplus(tmp_path):
    if not shutil.which("g++"):
        pytest.skip("g++ is not installed")
    runtime = generate_runtime(int8_dense())
    runtime.write(tmp_path, tmp_path)
    use = tmp_path / "use.cc"
    use.write_text('#include "tvmgen_default.h"\nint f() { tvmgen_default_inputs i; tvmgen_default_outputs o;\n'
                   "  return (int)tvmgen_default_run(&i, &o) + TVMGEN_DEFAULT_X_SIZE + TVMGEN_DEFAULT_WORKSPACE_SIZE; }\n")
    subprocess.run(["g++", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-I", str(tmp_path), str(use)], check=True)


@pytest.mark.parametrize("make", [float_mlp, int8_dense], ids=["float32", "int8"])
def test_builds_warning_free_on_host_and_cortex_m4(make, tmp_path):
    runtime = generate_runtime(make())
    sources = _write(runtime, tmp_path)
    assert [s.name for s in sources] == sorted(runtime.sources)
    objects = _compile_objects(["gcc", *STRICT, "-O2"], sources, tmp_path, "host")
    # The runtime needs nothing but the kernels: no malloc, no TVM runtime, no libc at all.
    runtime_obj = next(o for o in objects if "_runtime" in o.name)
    undefined = subprocess.run(["nm", "-u", str(runtime_obj)], check=True, capture_output=True, text=True).stdout.split()
    undefined = {u for u in undefined if u != "U"}
    assert undefined == {c.func_name for c in make().calls}
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    _compile_objects([*ARM, "-Os"], sources, tmp_path, "m4")
    _compile_objects(["arm-none-eabi-gcc", *STRICT, "-mcpu=cortex-m4", "-mthumb"], sources, tmp_path, "m4soft")


def test_constants_keep_their_dtype_and_alignment():
    source = generate_runtime(int8_dense()).sources["default_runtime.c"]
    assert re.search(r"static const int8_t tvmgen_default_const\d+\[2048\] TVMGEN_DEFAULT_ALIGN16 = \{", source)
    assert re.search(r"static const int32_t tvmgen_default_const\d+\[32\] TVMGEN_DEFAULT_ALIGN16 = \{", source)
    assert "__attribute__((aligned(16)))" in source
    assert "malloc" not in source and "json" not in source.lower()


def test_arena_offsets_come_from_the_plan():
    runtime = generate_runtime(int8_dense())
    source = runtime.sources["default_runtime.c"]
    assert f"uint8_t bytes[{runtime.plan.arena_size}];" in source
    for placement in runtime.plan.placements:
        assert f"tvmgen_default_arena.bytes + {placement.offset})" in source


def test_literals_are_exact_for_every_dtype(tmp_path):
    """Compile arrays of edge values and compare the bytes the C compiler produced with numpy's."""
    cases = {
        "float32": np.array([0.0, -0.0, 1.0, 0.1, -3.4e38, 1e-45, 1.17e-38, np.inf, -np.inf, 123456.789], np.float32),
        "float64": np.array([0.1, -1e-310, 1.7976931348623157e308, -np.inf], np.float64),
        "int8": np.array([-128, -1, 0, 127], np.int8),
        "uint8": np.array([0, 255], np.uint8),
        "int16": np.array([-32768, 32767], np.int16),
        "int32": np.array([-(2**31), 2**31 - 1, 0], np.int32),
        "uint32": np.array([0, 2**32 - 1], np.uint32),
        "int64": np.array([-(2**63), 2**63 - 1, -5], np.int64),
        "uint64": np.array([0, 2**64 - 1], np.uint64),
        "bool": np.array([True, False, True]),
        "float16": np.array([0.5, -65504.0, np.inf], np.float16),
    }
    from project_api.compiler.runtime_gen import c_type

    lines = ["#include <stdint.h>", "#include <stdio.h>", "#include <math.h>"]
    for i, (dtype, values) in enumerate(cases.items()):
        lines.append(f"static const {c_type(dtype)} a{i}[{values.size}] = {{{', '.join(c_literals(values, dtype))}}};")
    lines.append("int main(void) {")
    for i in range(len(cases)):
        lines.append(f"  fwrite(a{i}, 1, sizeof(a{i}), stdout);")
    lines += ["  return 0;", "}"]
    (tmp_path / "lit.c").write_text("\n".join(lines) + "\n")
    subprocess.run(["gcc", *STRICT, "-pedantic", str(tmp_path / "lit.c"), "-o", str(tmp_path / "lit")], check=True)
    produced = subprocess.run([str(tmp_path / "lit")], check=True, capture_output=True).stdout
    expected = b"".join(v.astype(np.int8).tobytes() if v.dtype == bool else v.tobytes() for v in cases.values())
    assert produced == expected


def test_nan_constant_builds(tmp_path):
    model = float_mlp()
    model.tensors["b2"].data = np.array([np.nan, 1.0, 2.0, 3.0], np.float32)
    sources = _write(generate_runtime(model), tmp_path)
    assert "#include <math.h>" in (tmp_path / "src" / "sample_mlp_runtime.c").read_text()
    _compile_objects(["gcc", *STRICT], sources, tmp_path, "nan")


def _tiny(inputs, outputs, calls=None):
    tensors = {n: Tensor(n, (4,), "float32", INPUT) for n in inputs}
    tensors.update({n: Tensor(n, (4,), "float32", OUTPUT) for n in outputs})
    if calls is None:
        calls = [KernelCall("k", inputs + outputs, list(outputs))]
    return LoweredModel("tiny", tensors, list(inputs), list(outputs), calls, "")


@pytest.mark.parametrize(
    "model, message",
    [
        (_tiny(["a:0", "a_0"], ["y"]), "same C name"),
        (_tiny(["x"], ["workspace"]), "same C name"),
        (_tiny(["x"], ["y"], calls=[]), "written by no kernel"),
        (_tiny([], ["y"]), "no inputs"),
        (_tiny(["x"], ["y"], calls=[KernelCall("bad-name", ["x", "y"], ["y"])]), "not a C identifier"),
        (_tiny(["x"], ["y"], calls=[KernelCall("k", ["x", "nope", "y"], ["y"])]), "unknown tensor"),
        (_tiny(["x"], ["y"], calls=[KernelCall("k", ["y", "x"], ["x"])]), "reads 'y' before any call writes it"),
        (_tiny(["x"], ["y"], calls=[KernelCall("k", ["x", "y"], ["x", "y"])]), "writes input 'x'"),
    ],
)
def test_bad_models_are_refused_in_one_line(model, message):
    with pytest.raises(CompileError, match=message) as err:
        generate_runtime(model)
    assert "\n" not in str(err.value)


def test_constant_with_wrong_data_is_refused():
    model = int8_dense()
    model.tensors["w"].data = model.tensors["w"].data.astype(np.float32)
    with pytest.raises(CompileError, match="constant 'w'"):
        generate_runtime(model)
