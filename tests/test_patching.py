"""Patch-based inference (project_api/compiler/patching.py): band geometry and the liveness bound as
properties of random convolution chains, then VWW compiled in row bands, bit-exact with the
layer-by-layer build and with tflite-micro (split tensor and model output), and the budget choice."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import fixture_path
from cortex_m_helpers import needs_arm_tools
from project_api.compiler import ir, patching
from project_api.compiler.errors import CompileError
from project_api.compiler.planner import arena_buffers, liveness_lower_bound, plan_model
from project_api.compiler.qnn import KernelSpec, RowGeometry

VWW = "mlperf_tiny_vww_96_int8"


# ------------------------------------------------------------------ random chains, no TVM

def _same_padding(size, kernel, stride):
    out = -(-size // stride)
    return out, max((out - 1) * stride + kernel - size, 0) // 2


class _ChainBuilder(ir.PartsBuilder):
    """What qnn's builder gives patching (calls, specs, tensors, funcs) for a chain of convolutions
    x -> t0 -> ... -> t(n-1) -> head -> y; band kernels are placeholders (no TVM here)."""

    def __init__(self, height, width, layers):
        super().__init__(["x"], ["y"])
        self.funcs, self.specs = {}, []
        channels = 2
        self.tensors["x"] = ir.Tensor("x", (1, height, width, channels), "int8", ir.INPUT)
        source = "x"
        for index, (kernel, stride, same, out_channels) in enumerate(layers):
            if min(height, width) < kernel:
                same = True  # VALID would leave no output row or column
            if same:
                out_h, pad = _same_padding(height, kernel, stride)
                out_w, _ = _same_padding(width, kernel, stride)
            else:
                out_h, out_w, pad = (height - kernel) // stride + 1, (width - kernel) // stride + 1, 0
            weight = np.zeros((out_channels, kernel, kernel, channels), np.int8)
            output = f"t{index}"
            self.tensors[output] = ir.Tensor(output, (1, out_h, out_w, out_channels), "int8", ir.INTERMEDIATE)
            self.tensors[f"w{index}"] = ir.Tensor(f"w{index}", weight.shape, "int8", ir.CONSTANT, weight)
            self.calls.append(ir.KernelCall(f"k{index}", [source, f"w{index}", output], [output]))
            self.funcs[f"k{index}"] = object()
            self.specs.append(KernelSpec("conv2d", None, [None, weight], None, RowGeometry(kernel, stride, pad),
                                         lambda rows_in, rows_out, pad_top: ("band", rows_in, rows_out, pad_top)))
            source, height, width, channels = output, out_h, out_w, out_channels
        self.tensors["y"] = ir.Tensor("y", (1, 1), "int8", ir.OUTPUT)
        self.calls.append(ir.KernelCall("head", [source, "y"], ["y"]))
        self.specs.append(KernelSpec("head", None, [None], None))

    def lowered(self):
        return ir.LoweredModel("chain", self.tensors, ["x"], ["y"], self.calls, "")


_layer = st.tuples(st.sampled_from([1, 3, 5]), st.sampled_from([1, 2]), st.booleans(), st.integers(1, 8))
_chain = st.tuples(st.integers(12, 40), st.integers(1, 9), st.lists(_layer, min_size=2, max_size=6))


def _rows_read(layer, output_row):
    """Input rows output row ``output_row`` reads, by brute force over the window's taps."""
    return {output_row * layer.stride - layer.pad_top + k for k in range(layer.kernel)} & set(range(layer.in_rows))


@settings(max_examples=60, deadline=None)
@given(_chain, st.data())
def test_bands_cover_the_split_output_and_tightly_the_receptive_fields(chain, data):
    height, width, layer_specs = chain
    builder = _ChainBuilder(height, width, layer_specs)
    layers, max_split = patching.chain_layers(builder)
    assert max_split == len(layer_specs)
    split = data.draw(st.integers(1, max_split))
    patches = data.draw(st.integers(1, layers[split - 1].out_rows))
    bands = patching.band_rows(layers, split, patches)
    # The bands partition the split output's rows, in order.
    assert [r for band in bands for r in range(band[-1][2], band[-1][3])] == list(range(layers[split - 1].out_rows))
    for band in bands:
        for j, (in_first, in_last, out_first, out_last) in enumerate(band):
            if j > 0:
                assert band[j - 1][2:] == (in_first, in_last), "a band's input is its predecessor's output"
            read = set().union(*(_rows_read(layers[j], y) for y in range(out_first, out_last)))
            # The band is the tightest run of rows holding the receptive field (a stride above the
            # window skips rows inside it).
            assert read <= set(range(in_first, in_last)) and (min(read), max(read)) == (in_first, in_last - 1)
            # The band kernel's padding is never negative: interior bands start at a real row.
            assert layers[j].pad_top + in_first - out_first * layers[j].stride >= 0


@settings(max_examples=30, deadline=None)
@given(_chain, st.data())
def test_plan_bound_is_the_planners_bound_of_the_rewritten_calls(chain, data):
    height, width, layer_specs = chain
    unpatched = _ChainBuilder(height, width, layer_specs)
    plans = patching.candidate_plans(unpatched, unpatched.lowered())
    if not plans:
        return
    plan = data.draw(st.sampled_from(plans))
    builder = _ChainBuilder(height, width, layer_specs)
    wrappers = patching.apply(builder, plan)
    model = builder.lowered()
    assert liveness_lower_bound(arena_buffers(model).values()) == plan.lower_bound
    # MACs: every band's output rows times the layer's MACs per row; the halo only adds.
    layers, _ = patching.chain_layers(_ChainBuilder(height, width, layer_specs))
    assert plan.macs == sum((o1 - o0) * layers[j].macs_per_row for band in plan.bands
                            for j, (_, _, o0, o1) in enumerate(band))
    if all(layer.kernel >= layer.stride for layer in layers):
        assert plan.macs >= plan.layer_macs  # else rows no window reads are skipped: fewer MACs
    # Each band's first call reads the model input, its last writes the split output, the calls
    # between read what the previous call wrote; wrappers offset by whole rows.
    calls = model.calls[:plan.split * plan.patches]
    for band_index, band in enumerate(plan.bands):
        band_calls = calls[band_index * plan.split:(band_index + 1) * plan.split]
        assert band_calls[0].args[0] == "x" and band_calls[-1].args[-1] == f"t{plan.split - 1}"
        for a, b in zip(band_calls, band_calls[1:]):
            assert b.args[0] == a.args[-1]
        for j, call in enumerate(band_calls):
            _, in_offset, out_offset = wrappers.get(call.func_name, (None, 0, 0))
            assert in_offset == (band[0][0] * layers[0].in_row_elements if j == 0 else 0)
            assert out_offset == (band[-1][2] * layers[plan.split - 1].out_row_elements if j == plan.split - 1 else 0)
    assert model.calls[plan.split * plan.patches:] == unpatched.calls[plan.split:]
    assert not any(f"k{j}" in builder.funcs for j in range(plan.split)), "whole-layer kernels are dropped"


def test_a_residual_ends_the_chain():
    builder = _ChainBuilder(16, 16, [(3, 1, True, 4)] * 4)
    builder.calls[-1].args.insert(0, "t1")  # the head also reads t1: a skip connection
    _, max_split = patching.chain_layers(builder)
    assert max_split == 2


def test_wrappers_offset_the_band_pointers_and_pass_workspaces(tmp_path):
    """A band kernel on rows 3.. of its input and rows 2.. of its output, with a workspace: the
    wrapper C compiles warning-free (C99) and hands the kernel the offset pointers."""
    import subprocess

    tensors = {"x": ir.Tensor("x", (1, 8, 4, 2), "int8", ir.INPUT),
               "w": ir.Tensor("w", (4,), "int32", ir.CONSTANT, np.zeros(4, np.int32)),
               "y": ir.Tensor("y", (1, 6, 4, 3), "int8", ir.INTERMEDIATE),
               "ws": ir.Tensor("ws", (300,), "int32", ir.WORKSPACE)}
    call = ir.KernelCall("band_from_row3_to_row2", ["x", "w", "y", "ws"], ["y", "ws"])
    wrappers = {"band_from_row3_to_row2": ("band", 3 * 4 * 2, 2 * 4 * 3)}
    c_kernels = patching.with_wrappers({"band": "band's CKernel"}, wrappers)
    assert c_kernels["band_from_row3_to_row2"] == "band's CKernel"
    source = tmp_path / "wrapper.c"
    source.write_text(
        "#include <stdint.h>\n#include <stdio.h>\n"
        "static int32_t band(int8_t* x, int32_t* w, int8_t* y, int32_t* ws) {\n"
        "  (void)w; (void)ws; y[0] = x[0]; return 7;\n}\n"
        + patching.wrappers_c(tensors, [call], wrappers) +
        "int main(void) {\n  int8_t x[64]; int8_t y[72] = {0}; int32_t w[4]; int32_t ws[300];\n"
        "  for (int i = 0; i < 64; ++i) x[i] = (int8_t)i;\n"
        "  int32_t status = band_from_row3_to_row2(x, w, y, ws);\n"
        "  printf(\"%d %d %d\\n\", (int)status, (int)y[24], (int)y[0]);\n  return 0;\n}\n")
    binary = tmp_path / "wrapper"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", str(source), "-o",
                    str(binary)], check=True, capture_output=True, text=True)
    # Input row 3 starts at element 24 (x[24] == 24); output row 2 at element 24 of y.
    assert subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.split() == ["7", "24", "0"]


# ------------------------------------------------------------------ VWW, compiled

@pytest.fixture(scope="module")
def vww():
    from project_api.compiler.lowering import lower_model

    path = fixture_path("models", f"{VWW}.tflite")
    lowered = lower_model(path)
    return path, lowered, plan_model(lowered), patching.search(path, lowered)


@pytest.fixture(scope="module")
def vww_half_budget(vww):
    """VWW compiled within half its layer-by-layer lower bound."""
    path, unpatched, plan, _ = vww
    return patching.lower_within_budget(path, plan.lower_bound // 2, lowered=unpatched)


def test_vww_half_the_layerwise_bound_with_under_15_percent_extra_macs(vww, vww_half_budget):
    _, _, unpatched_plan, candidates = vww
    lowered, arena, patch = vww_half_budget
    budget = unpatched_plan.lower_bound // 2
    assert patch is not None and arena.arena_size <= budget
    assert patch.extra_fraction <= 0.15, patch.describe()
    # The cheapest plan that fits: no candidate with fewer MACs has a bound within the budget.
    assert not [p for p in candidates if p.macs < patch.macs and p.lower_bound <= budget]
    assert patch.describe() in lowered.notes


def _exposing(model, tensor):
    """``model`` with ``tensor`` (the split output) also a model output: a caller buffer the later
    calls read, so one build checks the bands' result and the model's."""
    tensors = dict(model.tensors)
    tensors[tensor] = ir.Tensor(tensor, tensors[tensor].shape, tensors[tensor].dtype, ir.OUTPUT)
    return ir.LoweredModel(model.name, tensors, model.inputs, model.outputs + [tensor], model.calls, model.kernels_c,
                           notes=model.notes)


def _tflite_micro_tensor(path, inputs, op_index):
    """The output of operator ``op_index`` (and the model output) in tflite-micro, per input."""
    from tflite_micro.python.tflite_micro import runtime

    from project_api.compiler.frontend import read_tflite

    _, subgraph, _, _, _ = read_tflite(path, path.read_bytes())
    index = int(subgraph.Operators(op_index).OutputsAsNumpy()[0])
    interpreter = runtime.Interpreter.from_file(str(path), intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    results = []
    for x in inputs:
        interpreter.set_input(x, 0)
        interpreter.invoke()
        results.append((np.array(interpreter.GetTensor(index, 0)["tensor_data"]).copy(),
                        np.array(interpreter.get_output(0)).copy()))
    return results


def _inputs(shape, count=3):
    rng = np.random.default_rng(15)
    return [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(count)]


@pytest.fixture(scope="module")
def vww_exposed(vww, vww_half_budget):
    """The patched VWW exposing its split tensor, random inputs, and tflite-micro's results."""
    path, unpatched, _, _ = vww
    lowered, _, patch = vww_half_budget
    split_call = unpatched.calls[patch.split - 1]
    op_index = int(re.search(r"_q(\d+)_", split_call.func_name).group(1))
    inputs = _inputs(lowered.tensors[lowered.inputs[0]].shape)
    return _exposing(lowered, split_call.writes[0]), inputs, _tflite_micro_tensor(path, inputs, op_index)


def _assert_bit_exact(outputs, reference, where):
    for run, ((ours, ours_split), (expected_split, expected)) in enumerate(zip(outputs, reference)):
        np.testing.assert_array_equal(ours_split.reshape(expected_split.shape), expected_split,
                                      err_msg=f"split tensor, input {run}, {where}")
        np.testing.assert_array_equal(ours.reshape(expected.shape), expected, err_msg=f"model output, input {run}, {where}")


def test_vww_in_bands_is_bit_exact_with_tflite_micro_on_the_host(vww_exposed, tmp_path):
    """The split tensor (the one large activation the bands fill) and the model output, patched, built
    with -Werror, equal tflite-micro's on random inputs."""
    from project_api.compiler.mlf import export_mlf
    from project_api.compiler.native import NativeModel

    lowered, inputs, reference = vww_exposed
    with NativeModel(export_mlf(lowered, tmp_path / "patched.tar"), extra_cflags=["-Wall", "-Wextra", "-Werror"]) as model:
        outputs = model.run_many([[x] for x in inputs])
    _assert_bit_exact(outputs, reference, "host")


@needs_arm_tools
@pytest.mark.slow
def test_vww_in_bands_is_bit_exact_with_tflite_micro_on_qemu_cortex_m4(vww_exposed, tmp_path):
    """The same on QEMU mps2-an386 (Cortex-M4F, DSP micro-kernels): a standalone image built with
    -Werror, its input embedded (the host-driven session times out on VWW's 27 KiB input on QEMU,
    with or without patching), its outputs printed."""
    from cortex_m_helpers import load_server_module
    from project_api import boards, project_gen, standalone
    from project_api.compiler.mlf import export_mlf
    from project_api.emulators.qemu import run_to_exit
    from project_helpers import tvmc

    lowered, inputs, reference = vww_exposed
    mlf = export_mlf(lowered, tmp_path / "model.tar")
    np.savez(tmp_path / "inputs.npz", **{lowered.inputs[0]: inputs[0]})
    project = tmp_path / "project"
    tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", "board=mps2_an386",
         "project_type=standalone", f"standalone_inputs={tmp_path / 'inputs.npz'}", "warning_as_error=true")
    tvmc("micro", "build", project, "cortex_m")
    server = load_server_module()
    status, printed = run_to_exit(server.qemu_machine(boards.get_board("mps2_an386", "cortex_m")),
                                  project / "build" / "firmware.elf", 300)
    result = standalone.parse(printed.decode(), project_gen.read_mlf(mlf).outputs)
    assert status == 0 and result["status"] == 0
    _assert_bit_exact([result["outputs"]], reference[:1], "QEMU mps2-an386")


def test_budget_refusal_names_the_smallest_arena_reachable(vww):
    path, unpatched, _, candidates = vww
    smallest_bound = min(p.lower_bound for p in candidates)
    with pytest.raises(CompileError) as refused:
        patching.lower_within_budget(path, smallest_bound - 1, lowered=unpatched)
    message = str(refused.value)
    assert "\n" not in message and f"memory budget {smallest_bound - 1} B cannot be met" in message
    # The arena named is the smallest-bound plan's, compiled and planned (VWW's planner reaches it).
    assert f"the smallest arena reachable is {smallest_bound} B" in message, message


def test_cli_refuses_a_budget_in_one_line_naming_the_smallest_arena(tmp_path):
    """Through the real command line (micro_speech: no convolution chain, its 4004 B arena is the
    smallest); the budget it meets is test_no_patching_when_the_layerwise_plan_fits."""
    from project_helpers import tvmc

    path = fixture_path("models", "tflm_micro_speech_quantized.tflite")
    refused = tvmc("compile", path, "-o", tmp_path / "refused.tar", "--memory-budget", "4003", check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "tvmc: error: memory budget 4003 B cannot be met: the smallest arena reachable is 4004 B "
        "(layer by layer; no leading chain of int8 convolutions to run in bands)"]
    assert not (tmp_path / "refused.tar").exists()


def test_no_patching_when_the_layerwise_plan_fits(vww):
    path, unpatched, plan, _ = vww
    lowered, arena, patch = patching.lower_within_budget(path, plan.arena_size, lowered=unpatched)
    assert patch is None and arena.arena_size == plan.arena_size
