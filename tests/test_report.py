"""``tvmc compile --report``: the KWS report's numbers against the MLF metadata, the planner and the
.tflite model itself; its SVG has one rectangle per planned arena tensor."""

import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import project_helpers
from conftest import fixture_path
from project_api.compiler.lowering import lower_model
from project_api.compiler.mlf import read_metadata
from project_api.compiler.planner import plan_model
from project_api.report import build_report
from project_api.report.pictures import ARENA_TENSOR_ID

pytest.importorskip("matplotlib")

KWS = "mlperf_tiny_kws_ref_model_int8.tflite"


@pytest.fixture(scope="module")
def kws_report(tmp_path_factory):
    work = tmp_path_factory.mktemp("report")
    model = fixture_path("models", KWS)
    result = project_helpers.tvmc("-v", "compile", model, "-o", work / "kws.tar", "--report", work / "kws.html",
                                  check=False)
    assert result.returncode == 0, result.stderr
    lowered = lower_model(str(model))
    return work, model, result, lowered, plan_model(lowered)


def _tflite_macs(path):
    """MACs of the conv, depthwise and fully-connected ops, straight from the .tflite flatbuffer."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    macs = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        out = graph.Tensors(op.Outputs(0)).ShapeAsNumpy()
        weight = graph.Tensors(op.Inputs(1)).ShapeAsNumpy() if op.InputsLength() > 1 else None
        if builtin == tflite.BuiltinOperator.CONV_2D:        # OHWI
            macs[i] = int(np.prod(out)) * int(np.prod(weight[1:]))
        elif builtin == tflite.BuiltinOperator.DEPTHWISE_CONV_2D:  # 1 H W C
            macs[i] = int(np.prod(out)) * int(weight[1] * weight[2])
        elif builtin == tflite.BuiltinOperator.FULLY_CONNECTED:     # O I
            macs[i] = int(np.prod(out)) * int(weight[1])
    return macs


@pytest.mark.slow
def test_kws_report_matches_metadata_planner_and_model(kws_report):
    work, model_path, result, lowered, plan = kws_report
    metadata = read_metadata(work / "kws.tar")
    report = build_report(work / "kws.tar", model_path=model_path)
    m = report.model

    # Totals: the metadata, and the planner run again on the same model.
    assert m.arena_bytes == metadata["workspace_size_bytes"] == plan.arena_size == 16000
    assert m.lower_bound_bytes == plan.lower_bound
    assert m.weight_bytes == metadata["constants_size_bytes"]
    assert m.io_bytes == metadata["io_size_bytes"]
    assert report.ram_bytes == m.arena_bytes + m.io_bytes + report.footprint.stack_bytes
    # Per kernel: the planner's calls, output slots and weights.
    assert [k.func_name for k in m.kernels] == [c.func_name for c in lowered.calls]
    offsets = plan.offsets
    for kernel, call in zip(m.kernels, lowered.calls):
        out = kernel.output
        assert out.arena_offset == offsets.get(out.name, -1)
        constants = {a for a in call.args if lowered.tensors[a].kind == "constant"}
        assert kernel.weight_bytes == sum(lowered.tensors[a].nbytes for a in constants)
    assert sum(k.weight_bytes for k in m.kernels) == metadata["constants_size_bytes"]
    # MACs: the conv/depthwise/FC ops of the .tflite, in order (the q<N> in a kernel name is its op index).
    expected = _tflite_macs(model_path)
    counted = {int(re.search(r"_q(\d+)_", k.func_name).group(1)): k.macs for k in m.kernels if k.macs}
    assert counted == expected
    assert m.total_macs == sum(expected.values())
    # ROM: the cross-compiled objects hold every weight byte, and code for every kernel.
    fp = report.footprint
    if shutil.which("arm-none-eabi-gcc"):
        assert fp.cross and "cortex-m4" in fp.compiler
    assert fp.weight_bytes >= m.weight_bytes and fp.code_bytes > 0
    assert fp.rom_bytes == fp.code_bytes + fp.weight_bytes + fp.data_bytes
    assert fp.bss_bytes >= m.arena_bytes
    assert all(fp.function_code.get(k.func_name, 0) > 0 for k in m.kernels)
    assert fp.stack_bytes >= fp.function_stack[f"tvmgen_{m.c_name}_run"] > 0
    # tflite-micro's arena, when its package is installed: at least the activations it must hold.
    if report.tflm is not None:
        assert report.tflm.head_bytes >= plan.lower_bound
        assert report.tflm.total_bytes == report.tflm.head_bytes + report.tflm.tail_bytes

    # The same figures reach stdout (the default summary) and the HTML.
    for figure in (f"{fp.rom_bytes:,} B", f"{report.ram_bytes:,} B", f"{m.total_macs:,}"):
        assert figure in result.stdout
    page = (work / "kws.html").read_text()
    assert f"{fp.rom_bytes:,} B" in page and f"{m.total_macs:,}" in page


@pytest.mark.slow
def test_kws_report_svg_has_one_rectangle_per_planned_tensor(kws_report):
    work, model_path, _, _, plan = kws_report
    page = (work / "kws.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) == 2  # the arena plan and the layers
    root = ET.fromstring(svgs[0])
    groups = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("id", "").startswith(ARENA_TENSOR_ID)]
    assert len(groups) == len(plan.placements) == 11
    for group in groups:  # each is one closed path: a rectangle
        paths = list(group.iter("{http://www.w3.org/2000/svg}path"))
        assert len(paths) == 1 and paths[0].get("d", "").strip().endswith("z")
    for suffix in ("arena.png", "layers.png"):
        assert (work / f"kws.{suffix}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_compile_shows_its_stages(kws_report):
    """-v: one line per compile stage with its time (on a terminal: one line rewritten in place)."""
    work, model_path, result, _, _ = kws_report
    stages = [line.split(": ", 1)[1].split(" done in ")[0] for line in result.stderr.splitlines()
              if line.startswith("tvmc compile: ")]
    assert stages[:3] == [f"lowering {model_path.name} with TVM and planning the arena",
                          "generating the static runtime", f"writing {work / 'kws.tar'}"]
    assert stages[3].startswith("measuring ROM and stack") and stages[4] == f"drawing the report {work / 'kws.html'}"


def test_report_bad_path_is_one_line(tmp_path):
    model = fixture_path("models", "tflm_hello_world_float.tflite")
    (tmp_path / "file").write_text("")
    result = project_helpers.tvmc("compile", model, "-o", tmp_path / "m.tar", "--report",
                                  tmp_path / "file" / "r.html", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"tvmc: error: cannot write --report {tmp_path / 'file' / 'r.html'}: "
                     f"{tmp_path / 'file'} is a file, not a directory"]
    assert not (tmp_path / "m.tar").exists()  # refused before compiling
