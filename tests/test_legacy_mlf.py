"""Legacy Model Library Format archives (TVM 0.8-0.18) on every template (issue #11).

The real TVM 0.8 graph-executor archive of micro_speech (../shared/fixtures/legacy-mlf) is
translated at `tvmc micro create` (project_api/mlf/legacy.py), built and run on the host board
and on QEMU mps2-an386 (host-driven and standalone); every layout derived from it (MLF v2-v7,
without linked parameters, AOT archives of the same kernels in the TVM 0.8, 0.9+ and USMP styles)
gives the same outputs; a tiny legacy archive runs on the emulated Arduino Mega, where
micro_speech is refused for its RAM; damaged archives are refused at create with one line and
leave nothing behind."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import legacy_archives
from conftest import fixture_path
from cortex_m_helpers import load_server_module, needs_arm_tools
from project_api import client, project_gen
from project_api.compiler.native import NativeModel
from project_api.mlf.legacy_params import ParamsFormatError, load_params, save_params
from project_api.rpc.transport import ProjectAPITransport
from project_api.session import Session
from project_helpers import needs_cc, tvmc

RUNS = 20
QEMU_RUNS = 8  # each inference over QEMU's emulated UART takes about a second
INPUT = "Reshape_1"
ARCHIVE_WORKSPACE = 17392  # workspace_size_bytes in the fixture's metadata.json


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(1111)
    return [rng.integers(-128, 128, size=(1, 1960), dtype=np.int8) for _ in range(RUNS)]


@pytest.fixture(scope="module")
def native(inputs):
    """The graph fixture built natively (translated the way create translates it) on the inputs."""
    with NativeModel(legacy_archives.graph_fixture()) as model:
        return [outputs[0] for outputs in model.run_many([[x] for x in inputs])]


def _session_outputs(project, inputs):
    with client.instantiate_from_dir(project) as api:
        with Session(ProjectAPITransport(api), run_timeout_sec=120) as session:
            outputs = []
            for x in inputs:
                session.set_input(INPUT, x)
                session.run()
                outputs.append(session.get_output(0))
            return outputs


def _create_build_flash(project, mlf, platform, *options):
    tvmc("micro", "create", project, mlf, platform, "--project-option", "warning_as_error=true", *options)
    tvmc("micro", "build", project, platform)
    tvmc("micro", "flash", project, platform)


def _translation(project) -> dict:
    return json.loads((project / "model" / "legacy" / "translation.json").read_text())


# ---- the reader and the params format --------------------------------------------------------


def test_reader_imports_neither_the_compiler_nor_tvm():
    code = ("import sys, project_api.mlf.reader, project_api.mlf.legacy, project_api.project_gen; "
            "loaded = [m for m in sys.modules if m == 'tvm' or m.startswith(('tvm.', 'project_api.compiler'))]; "
            "print(loaded); sys.exit(1 if loaded else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=pathlib.Path(__file__).parent.parent)
    assert result.returncode == 0, f"importing the reader loaded {result.stdout.strip()} {result.stderr[-500:]}"


def test_params_decode_the_fixture_and_round_trip(tmp_path):
    root = legacy_archives.extract(tmp_path / "x")
    blob = (root / "parameters" / "default.params").read_bytes()
    params = load_params(blob)
    assert list(params) == [f"p{i}" for i in (0, 1, 8, 4, 2, 3, 5, 6, 7)]
    assert params["p1"].dtype == np.int16 and params["p1"].shape == (10, 8, 1, 8)
    assert params["p0"].shape == () and int(params["p0"]) == -128  # the input zero point, as int16
    assert save_params(params) == blob
    for cut in (10, 30, len(blob) - 1):
        with pytest.raises(ParamsFormatError, match="truncated"):
            load_params(blob[:cut])
    with pytest.raises(ParamsFormatError, match="trailing"):
        load_params(blob + b"\0")


@needs_cc
def test_shim_workspace_allocator(tmp_path):
    """tests/c/test_legacy_shim.c against the shim, natively; the shim also builds warning-free for
    a Cortex-M0 and an AVR (16-bit int and size_t)."""
    from project_api.mlf.legacy import SHIM_DIR

    here = pathlib.Path(__file__).parent
    flags = ["-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{SHIM_DIR}"]
    subprocess.run(["cc", *flags, str(here / "c" / "test_legacy_shim.c"), str(SHIM_DIR / "tvm_legacy_shim.c"),
                    "-o", str(tmp_path / "shim_test")], check=True)
    result = subprocess.run([str(tmp_path / "shim_test")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout
    for cc, target in (("arm-none-eabi-gcc", ["-mcpu=cortex-m0", "-mthumb", "-Wcast-align"]),
                       ("avr-gcc", ["-mmcu=atmega2560"])):
        if __import__("shutil").which(cc):
            subprocess.run([cc, *target, *flags, "-Os", "-c", str(SHIM_DIR / "tvm_legacy_shim.c"),
                            "-o", str(tmp_path / f"shim_{cc}.o")], check=True)


# ---- every legacy layout gives the graph fixture's outputs ------------------------------------


@needs_cc
@pytest.mark.parametrize("layout", ["v2", "v4", "v6", "v7", "unlinked", "nop", "aot_v08", "aot_v08_packed", "aot_capi",
                                    "aot_usmp"])
def test_legacy_layouts_give_the_graph_fixture_outputs(layout, tmp_path, inputs, native):
    if layout.startswith("aot"):
        mlf = legacy_archives.aot(tmp_path, layout[4:])
    elif layout == "unlinked":
        mlf = legacy_archives.unlinked(tmp_path)
    elif layout == "nop":
        mlf = legacy_archives.with_nop(tmp_path)
    else:
        mlf = legacy_archives.versioned(tmp_path, int(layout[1:]))
    with NativeModel(mlf) as model:
        got = [outputs[0] for outputs in model.run_many([[x] for x in inputs[:5]])]
        translation = model.legacy_translation
        src = model.build_dir / "model" / "codegen" / "host" / "src"
        runtime_c = (src / "default_runtime.c").read_text() if translation.executor == "graph" else ""
    for run, (a, b) in enumerate(zip(got, native)):
        np.testing.assert_array_equal(a, b, err_msg=f"{layout} input {run}")
    assert translation.executor == ("aot" if layout.startswith("aot") else "graph")
    assert translation.linked_params == (layout != "unlinked")
    if layout == "unlinked":  # the weights come from parameters/default.params, as const arrays in flash
        assert runtime_c.count("static const int16_t tvmgen_default_const") == 4  # p0 p1 p6 p7
    elif translation.executor == "graph":  # linked: the kernels' own arrays, no second copy
        assert "tvmgen_default_const" not in runtime_c
    if translation.executor == "graph":
        assert translation.arena_bytes == translation.lower_bound_bytes <= ARCHIVE_WORKSPACE
    else:  # the archive's own pool(s): USMP's global_workspace + the kernels' largest scratch
        assert translation.arena_bytes == legacy_archives.AOT_WORKSPACE_BYTES


# ---- the fixture on the boards ---------------------------------------------------------------


@needs_cc
@pytest.mark.slow
def test_graph_fixture_on_the_host_board_agrees_with_tflite_micro(tmp_path, inputs, native):
    from test_compile_accuracy import _tflite_micro

    project = tmp_path / "host_project"
    _create_build_flash(project, legacy_archives.graph_fixture(), "host")
    translation = _translation(project)
    assert translation["workspace_size_bytes"] == ARCHIVE_WORKSPACE
    assert translation["lower_bound_bytes"] <= translation["arena_bytes"] <= ARCHIVE_WORKSPACE
    assert (project / "model" / "legacy" / "default_lib0.c").is_file()  # the registry, set aside
    header = (project / "model" / "codegen" / "host" / "include" / "tvmgen_default.h").read_text()
    assert f"#define TVMGEN_DEFAULT_WORKSPACE_SIZE {translation['arena_bytes']}" in header

    ours = _session_outputs(project, inputs)
    for run, (device, reference) in enumerate(zip(ours, native)):
        np.testing.assert_array_equal(device, reference, err_msg=f"host board vs native, input {run}")
    shown = tvmc("run", "--device", "micro", project, "--fill-mode", "ones", "--print-top", "4").stdout
    assert "top 4 of output_0 (output)" in shown and len([l for l in shown.splitlines() if l.strip()[:1].isdigit()]) == 4
    tflm = _tflite_micro(fixture_path("models", "tflm_micro_speech_quantized.tflite"), inputs)
    lsb = [int(np.abs(o.astype(np.int32) - m.astype(np.int32)).max()) for o, m in zip(ours, tflm)]
    top1 = [int(np.argmax(o)) == int(np.argmax(m)) for o, m in zip(ours, tflm)]
    print(f"legacy micro_speech vs tflite-micro: max {max(lsb)} LSB, top-1 equal {sum(top1)}/{len(top1)}")
    assert all(top1), f"top-1 differs from tflite-micro on inputs {[i for i, ok in enumerate(top1) if not ok]}"
    # The archive was compiled (2021) from an earlier quantization of micro_speech than the
    # fixture .tflite (input scale 0.1015625 vs 0.1017157, FC output scale 0.1055 vs 0.0917, conv
    # biases off by 1-2): outputs cannot agree to 1 LSB; this bounds the measured 6 LSB.
    assert max(lsb) <= 8


@needs_arm_tools
@pytest.mark.slow
def test_graph_fixture_on_qemu_host_driven_and_standalone(tmp_path, inputs, native):
    project = tmp_path / "qemu_project"
    _create_build_flash(project, legacy_archives.graph_fixture(), "cortex_m", "board=mps2_an386",
                        "project_type=host_driven")
    for run, (device, reference) in enumerate(zip(_session_outputs(project, inputs[:QEMU_RUNS]), native)):
        np.testing.assert_array_equal(device, reference, err_msg=f"QEMU host-driven vs native, input {run}")

    from project_api import boards, standalone as standalone_output
    from project_api.emulators.qemu import run_to_exit

    server = load_server_module()
    np.savez(tmp_path / "in.npz", **{INPUT: inputs[3]})
    standalone = tmp_path / "qemu_standalone"
    _create_build_flash(standalone, legacy_archives.graph_fixture(), "cortex_m", "board=mps2_an386",
                        "project_type=standalone", f"standalone_inputs={tmp_path / 'in.npz'}")
    machine = server.qemu_machine(boards.get_board(project_gen.read_project_yaml(standalone)["board"], "cortex_m"))
    status, output = run_to_exit(machine, standalone / "build" / "firmware.elf", 60)
    result = standalone_output.parse(output.decode(), project_gen.read_mlf(standalone / "model.tar").outputs)
    assert status == 0 and result["status"] == 0
    np.testing.assert_array_equal(result["outputs"][0], native[3])


@needs_cc
@pytest.mark.slow
def test_aot_archive_on_the_host_board_equals_the_graph_executor(tmp_path, inputs, native):
    project = tmp_path / "aot_project"
    _create_build_flash(project, legacy_archives.aot(tmp_path, "v08"), "host")
    translation = _translation(project)
    assert translation["executor"] == "aot" and translation["arena_bytes"] == legacy_archives.AOT_WORKSPACE_BYTES
    assert (project / "model" / "legacy" / "default_lib0.c").is_file()  # the CRT AOT glue, set aside
    for run, (device, graph) in enumerate(zip(_session_outputs(project, inputs), native)):
        np.testing.assert_array_equal(device, graph, err_msg=f"AOT vs graph executor, input {run}")


@needs_arm_tools
@pytest.mark.slow
def test_usmp_aot_archive_on_qemu_equals_the_graph_executor(tmp_path, inputs, native):
    """A TVM 0.10+ style AOT archive (--interface-api=c, a USMP pool) on the Cortex-M4F."""
    project = tmp_path / "qemu_aot"
    _create_build_flash(project, legacy_archives.aot(tmp_path, "usmp"), "cortex_m", "board=mps2_an386",
                        "project_type=host_driven")
    for run, (device, graph) in enumerate(zip(_session_outputs(project, inputs[:3]), native)):
        np.testing.assert_array_equal(device, graph, err_msg=f"QEMU USMP AOT vs graph executor, input {run}")


# ---- zephyr and arduino ----------------------------------------------------------------------


def test_zephyr_project_generates_from_the_graph_fixture(tmp_path):
    tvmc("micro", "create", tmp_path / "zephyr_project", legacy_archives.graph_fixture(), "zephyr",
         "--project-option", "board=qemu_x86", "project_type=host_driven")
    model = tmp_path / "zephyr_project" / "model" / "codegen" / "host"
    assert {"default_runtime.c", "default_legacy_calls.c", "default_lib1.c", "tvm_legacy_shim.c"} <= {
        p.name for p in (model / "src").glob("*.c")}
    assert (model / "include" / "tvmgen_default.h").is_file()


@needs_cc
def test_tiny_legacy_archive_natively(tmp_path):
    """The hand-written packed kernels check num_args and every type code, as TVM's do."""
    x = np.array([[1, 2, 100, -100, 1, -1, -128, 127]], np.int8)
    with NativeModel(legacy_archives.tiny(tmp_path)) as model:
        np.testing.assert_array_equal(model.run([x])[0], legacy_archives.tiny_expected(x))


@pytest.mark.slow
@pytest.mark.skipif(
    not (__import__("shutil").which("arduino-builder") and __import__("shutil").which("avr-gcc")
         and pathlib.Path("/usr/share/arduino/hardware/arduino/avr").is_dir()
         and pathlib.Path("/usr/include/simavr/sim_avr.h").exists()),
    reason="needs apt-get install gcc-avr avr-libc arduino-builder arduino-core-avr simavr libsimavr-dev")
def test_tiny_legacy_archive_on_the_emulated_mega(tmp_path):
    """A legacy graph archive that fits the Mega's 8 KiB: built with -Werror, run over RPC on simavr
    (16-bit int: the packed type codes must still read as int32)."""
    sketch = tmp_path / "tiny_sketch"
    tvmc("micro", "create", sketch, legacy_archives.tiny(tmp_path), "arduino", "--project-option",
         "board=mega2560_simavr", "project_type=host_driven", "warning_as_error=true")
    tvmc("micro", "build", sketch, "arduino")
    tvmc("micro", "flash", sketch, "arduino")
    rng = np.random.default_rng(3)
    xs = [rng.integers(-128, 128, (1, 8), dtype=np.int8) for _ in range(3)]
    with client.instantiate_from_dir(sketch) as api:
        with Session(ProjectAPITransport(api), run_timeout_sec=60) as session:
            for x in xs:
                session.set_input("x", x)
                session.run()
                np.testing.assert_array_equal(session.get_output(0), legacy_archives.tiny_expected(x))


def test_arduino_mega_refuses_the_graph_fixture_with_sizes(tmp_path):
    result = tvmc("micro", "create", tmp_path / "mega_sketch", legacy_archives.graph_fixture(), "arduino",
                  "--project-option", "board=mega2560_simavr", "project_type=host_driven", check=False)
    message = result.stderr.strip()
    assert result.returncode != 0 and "\n" not in message and "Traceback" not in message
    assert "needs 19,356 B of RAM (arena 17,392 B + inputs/outputs 1,964 B)" in message and "8,192 B" in message
    assert not (tmp_path / "mega_sketch").exists()


@pytest.mark.skipif(not __import__("shutil").which("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")
def test_arduino_sketch_of_the_graph_fixture_compiles_flat_for_the_due(tmp_path):
    """Arduino compiles only the flat src/ folder: the translated model must build from there."""
    sketch = tmp_path / "due_sketch"
    tvmc("micro", "create", sketch, legacy_archives.graph_fixture(), "arduino", "--project-option", "board=due",
         "project_type=host_driven")
    sources = [p for p in (sketch / "src").glob("*.c") if p.name.startswith(("default_", "tvm_legacy"))]
    assert len(sources) == 4
    for source in sources:
        subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m3", "-mthumb", "-std=c99", "-Wall", "-Wextra", "-Werror",
                        "-Os", "-c", str(source), "-I", str(sketch / "src"), "-o", str(tmp_path / (source.stem + ".o"))],
                       check=True, capture_output=True)


# ---- what cannot be honoured is refused at create --------------------------------------------


@pytest.mark.parametrize("how,member,reason", [
    ("missing_graph", "executor-config/graph/graph.json", "is missing"),
    ("truncated_params", "parameters/default.params", "truncated"),
    ("missing_param", "parameters/default.params", "parameter 'p3'"),
    ("no_params", "parameters/default.params", "is missing, so it cannot name parameter 'p0'"),
    ("unknown_symbol", "codegen/host/src/default_lib1.c", "TVMBackendParallelLaunch"),
    ("llvm_target", "metadata.json", "not the C target"),
    ("object_file", "codegen/host/lib/lib0.o", "compiled object"),
    ("missing_kernel", "executor-config/graph/graph.json", "tvmgen_default_fused_nn_softmax_gone"),
    ("aot_no_entry", "codegen/host/src", "no source defines tvmgen_default_run_model or tvmgen_default_run"),
    ("aot_no_workspace", "metadata.json", "records no workspace_size_bytes"),
])
def test_damaged_legacy_archives_are_refused_at_create(how, member, reason, tmp_path):
    mlf = legacy_archives.damaged(tmp_path, how)
    project = tmp_path / "project"
    result = tvmc("micro", "create", project, mlf, "host", check=False)
    message = result.stderr.strip()
    assert result.returncode != 0
    assert "\n" not in message and "Traceback" not in message, message
    assert member in message and reason in message, message
    assert not project.exists(), "a refused archive must leave no half-generated project"
