"""The cortex_m template end to end without TVM: MLFs written from hand-built LoweredModels
(tests/lowered_samples.py), projects generated and built through the real Project API server,
run on real QEMU, compared with the host-native build of the same archive."""

import pathlib
import subprocess
import time

import numpy as np
import pytest

import lowered_samples
from cortex_m_helpers import TEMPLATE_DIR, load_server_module, needs_arm_tools
from project_helpers import check_frozen_error, frozen_during_time_evaluate
from project_api import boards, client, project_gen
from project_api.compiler.ir import INPUT, INTERMEDIATE, OUTPUT, KernelCall, LoweredModel, Tensor
from project_api.compiler.mlf import export_mlf
from project_api.compiler.native import run_native
from project_api.emulators.qemu import QemuMachine, run_to_exit
from project_api.rpc.transport import ProjectAPITransport, SerialTransport, TransportTimeouts
from project_api.session import Session
from project_api.standalone import parse as decode_standalone

pytestmark = needs_arm_tools

X = (np.arange(8, dtype=np.float32).reshape(1, 8) - 3.0) * np.float32(0.75)
BIAS = np.linspace(-1, 1, 16, dtype=np.float32).reshape(1, 16)
INPUTS = {"input:0": X, "bias_in": BIAS}
SERVER = load_server_module()


@pytest.fixture(scope="session")
def mlp_mlf(tmp_path_factory):
    """The float MLP sample: two inputs, two outputs, names that need sanitizing."""
    path = export_mlf(lowered_samples.float_mlp(), tmp_path_factory.mktemp("mlf") / "mlp.tar")
    return path, run_native(path, INPUTS)


def _generate(mlf, project_dir, **options):
    options = {"warning_as_error": True, **options}
    with client.instantiate_from_dir(TEMPLATE_DIR) as api:
        api.generate_project(mlf, None, project_dir, options)


def _build(project_dir):
    with client.instantiate_from_dir(project_dir) as api:
        api.build({})
        api.flash({})


def _model_info(project_dir):
    return project_gen.read_mlf(pathlib.Path(project_dir) / project_gen.MLF_FILENAME)


def _run_standalone(project_dir):
    board = SERVER.boards.get_board(project_gen.read_project_yaml(project_dir)["board"], "cortex_m")
    status, output = run_to_exit(SERVER.qemu_machine(board), pathlib.Path(project_dir) / "build" / "firmware.elf", 60)
    return status, decode_standalone(output.decode(), _model_info(project_dir).outputs)


@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2_an385", "mps2_an386", "mps2_an500", "lm3s6965evb"])
def test_host_driven_matches_native(mlp_mlf, tmp_path, board):
    mlf, expected = mlp_mlf
    project = tmp_path / "project"
    _generate(mlf, project, board=board, project_type="host_driven")
    _build(project)
    with client.instantiate_from_dir(project) as api:
        with Session(ProjectAPITransport(api)) as sess:
            info = sess.get_info()
            assert info.device.timer_hz == SERVER.boards.get_board(board).extra["core_clock_hz"]
            assert not info.device.timer_is_cycles  # QEMU's SysTick counts virtual time, not cycles
            for name, value in INPUTS.items():
                sess.set_input(name, value)
            sess.run()
            for index, want in enumerate(expected):
                np.testing.assert_array_equal(sess.get_output(index), want)
            timing = sess.time_evaluate(number=3, repeat=1)
            assert timing.results[0] > 0


@pytest.mark.slow
@pytest.mark.parametrize("board", ["mps2_an386", "lm3s6965evb"])
def test_standalone_matches_native_and_reports(mlp_mlf, tmp_path, board):
    mlf, expected = mlp_mlf
    np.savez(tmp_path / "in.npz", **INPUTS)
    project = tmp_path / "project"
    _generate(mlf, project, board=board, project_type="standalone", standalone_inputs=str(tmp_path / "in.npz"),
              standalone_runs=5)
    _build(project)
    status, result = _run_standalone(project)
    assert status == 0 and result["status"] == 0
    for got, want in zip(result["outputs"], expected):
        np.testing.assert_array_equal(got, want)
    one, five = result["ticks"][1], result["ticks"][5]
    assert one > 0 and abs(five - 5 * one) <= 5  # deterministic under -icount
    assert 0 < result["stack_bytes"] < 1024


@pytest.mark.slow
def test_standalone_model_error_is_the_exit_status(mlp_mlf, tmp_path):
    """sample_relu_16 returns 42 for x < -10000: the status line says so and QEMU exits 1."""
    mlf, _ = mlp_mlf
    np.savez(tmp_path / "in.npz", **{"input:0": np.zeros((1, 8), np.float32), "bias_in": np.full((1, 16), -1e5, np.float32)})
    project = tmp_path / "project"
    _generate(mlf, project, board="mps2_an386", project_type="standalone", standalone_inputs=str(tmp_path / "in.npz"))
    _build(project)
    status, result = _run_standalone(project)
    assert (status, result["status"]) == (1, 42)


@pytest.mark.slow
def test_generated_project_builds_by_hand_to_the_same_image(mlp_mlf, tmp_path):
    """Plain `make` in the project (as from an IDE) gives the same firmware as tvmc micro build."""
    mlf, _ = mlp_mlf
    project = tmp_path / "project"
    _generate(mlf, project, board="mps2_an386", project_type="host_driven")
    _build(project)
    subprocess.run(["make", "-s", "-C", str(project), "BUILD_DIR=by-hand"], check=True, stdout=subprocess.DEVNULL)
    by_hand = (project / "by-hand" / "firmware.elf").read_bytes()
    # Same code and data; only paths embedded in the debug info may differ.
    def image(elf):
        out = tmp_path / (elf.parent.name + ".bin")
        subprocess.run(["arm-none-eabi-objcopy", "-O", "binary", str(elf), str(out)], check=True)
        return out.read_bytes()

    by_tool, by_hand = image(project / "build" / "firmware.elf"), image(project / "by-hand" / "firmware.elf")
    assert len(by_tool) > 1000 and by_tool == by_hand


# ---- what does not fit, and bad input ---------------------------------------------------------

BIG_KERNELS = r"""
#include <stdint.h>
int32_t big_fill(float* x, float* scratch) {
  for (int32_t i = 0; i < BIG_N; ++i) scratch[i] = x[0] + (float)i;
  return 0;
}
int32_t big_last(float* scratch, float* y) {
  y[0] = scratch[BIG_N - 1];
  return 0;
}
"""


def _big_arena_model(floats: int) -> LoweredModel:
    """x -> an intermediate of `floats` float32 in the arena -> y: RAM use chosen by the test."""
    tensors = {
        "x": Tensor("x", (1,), "float32", INPUT),
        "scratch": Tensor("scratch", (floats,), "float32", INTERMEDIATE),
        "y": Tensor("y", (1,), "float32", OUTPUT),
    }
    calls = [KernelCall("big_fill", ["x", "scratch"], ["scratch"]), KernelCall("big_last", ["scratch", "y"], ["y"])]
    return LoweredModel("big", tensors, ["x"], ["y"], calls, f"#define BIG_N {floats}\n" + BIG_KERNELS, "", "c")


@pytest.mark.slow
def test_too_big_for_ram_fails_at_build_with_the_sizes(tmp_path):
    """A 56 KiB arena passes the metadata check on lm3s6965evb (64 KiB RAM) but not the link, where
    the stack and the RPC buffers join it: build fails naming the board and the region sizes."""
    mlf = export_mlf(_big_arena_model(14336), tmp_path / "big.tar")
    project = tmp_path / "project"
    _generate(mlf, project, board="lm3s6965evb", project_type="host_driven")
    with client.instantiate_from_dir(project) as api:
        with pytest.raises(client.ServerError) as err:
            api.build({})
    message = str(err.value)
    assert "does not fit board lm3s6965evb" in message
    assert "RAM" in message and "65,536 B (too big)" in message, message


def test_too_big_for_ram_fails_at_generate(tmp_path):
    mlf = export_mlf(_big_arena_model(20000), tmp_path / "big.tar")  # 80 KB arena > 64 KiB
    with pytest.raises(client.ServerError, match=r"needs 80,008 B of RAM .* lm3s6965evb has 65,536 B"):
        _generate(mlf, tmp_path / "project", board="lm3s6965evb")
    assert not (tmp_path / "project").exists()


def test_bad_standalone_inputs_are_refused(mlp_mlf, tmp_path):
    mlf, _ = mlp_mlf
    np.savez(tmp_path / "wrong_name.npz", **{"input_0": X})
    np.savez(tmp_path / "wrong_shape.npz", **{"input:0": X[:, :4]})
    np.savez(tmp_path / "lossy.npz", **{"input:0": X.astype(np.float64) + 1e-12})
    cases = [("wrong_name.npz", r"\['input_0'\] that are not inputs"),
             ("wrong_shape.npz", r"'input:0' is float32\[1, 4\] but the model wants float32\[1, 8\]"),
             ("lossy.npz", r"values exact in float32"),
             ("absent.npz", r"cannot read standalone_inputs")]
    for name, pattern in cases:
        with pytest.raises(client.ServerError, match=pattern):
            _generate(mlf, tmp_path / f"project_{name}", board="mps2_an386", project_type="standalone",
                      standalone_inputs=str(tmp_path / name))
        assert not (tmp_path / f"project_{name}").exists(), "a refused project leaves no directory behind"


@pytest.mark.slow
def test_standalone_project_has_no_transport(mlp_mlf, tmp_path):
    mlf, _ = mlp_mlf
    project = tmp_path / "project"
    _generate(mlf, project, board="mps2_an386", project_type="standalone")
    with client.instantiate_from_dir(project) as api:
        with pytest.raises(client.ServerError, match="standalone project.*make run"):
            api.open_transport({})
        with pytest.raises(client.ServerError, match="build the project first"):
            api.flash({})


def test_template_refuses_build(tmp_path):
    with client.instantiate_from_dir(TEMPLATE_DIR) as api:
        with pytest.raises(client.ServerError, match="needs a generated project"):
            api.build({})


def test_unknown_board_names_the_choices(mlp_mlf, tmp_path):
    mlf, _ = mlp_mlf
    with pytest.raises(client.RPCError, match="lm3s6965evb"):
        _generate(mlf, tmp_path / "p", board="stm32f746g_disco")


CRASH_KERNELS = r"""
#include <stdint.h>
/* Faults (a store to an unmapped address) when x > 100, else copies x to y. */
int32_t crash_if_big(float* x, float* y) {
  if (x[0] > 100.0f) *(volatile uint32_t*)0xFFFFFFF0u = 1u;
  y[0] = x[0];
  return 0;
}
int32_t crash_copy(float* x, float* y) {
  y[0] = x[0];
  return 0;
}
"""


@pytest.mark.slow
def test_firmware_fault_ends_the_session_with_the_reason(tmp_path):
    """A fault in the model's code: QEMU exits (status 2) and the host hears why, without hanging."""
    tensors = {"x": Tensor("x", (1,), "float32", INPUT), "t": Tensor("t", (1,), "float32", INTERMEDIATE),
               "y": Tensor("y", (1,), "float32", OUTPUT)}
    calls = [KernelCall("crash_if_big", ["x", "t"], ["t"]), KernelCall("crash_copy", ["t", "y"], ["y"])]
    mlf = export_mlf(LoweredModel("crash", tensors, ["x"], ["y"], calls, CRASH_KERNELS, "", "c"), tmp_path / "c.tar")
    project = tmp_path / "project"
    _generate(mlf, project, board="mps2_an386", project_type="host_driven")
    _build(project)
    with client.instantiate_from_dir(project) as api:
        sess = Session(ProjectAPITransport(api))
        sess.open()
        try:
            sess.set_input("x", np.array([1.5], np.float32))
            sess.run()
            assert sess.get_output(0)[0] == np.float32(1.5)
            sess.set_input("x", np.array([500.0], np.float32))
            started = time.monotonic()
            with pytest.raises(Exception, match="QEMU exited with status 2"):
                sess.run()
            assert time.monotonic() - started < 30
        finally:
            try:
                sess.close()
            except Exception:
                pass


@pytest.mark.slow
def test_frozen_qemu_during_a_long_time_evaluate_is_noticed_in_seconds(mlp_mlf, tmp_path):
    """SIGSTOP on QEMU mid-way through a long time_evaluate: a clear line within 2x the expected
    run time plus the established timeout, and QEMU does not outlive the session."""
    mlf, _ = mlp_mlf
    project = tmp_path / "project"
    _generate(mlf, project, board="mps2_an385", project_type="host_driven")
    _build(project)
    timeouts = TransportTimeouts(0.2, 5, 1.0)
    number, repeat = 6000, 8  # about 0.3 s a batch on QEMU (icount: the guest's clock is not the host's)
    qemu = QemuMachine(SERVER.qemu_machine(boards.get_board("mps2_an385", "cortex_m")), project / "build" / "firmware.elf")
    with qemu:
        with Session(SerialTransport(qemu.serial_url, timeouts=timeouts)) as sess:
            error, elapsed, batch_sec = frozen_during_time_evaluate(sess, qemu.pid, number, repeat,
                                                                    freeze_in_batch=3, hard_limit_sec=20)
        pid = qemu.pid
    check_frozen_error(error, elapsed, batch_sec, repeat, timeouts)
    assert not qemu.running and not pathlib.Path(f"/proc/{pid}").exists()


def _rpc_test_firmware(dest: pathlib.Path, board_name: str = "mps2_an386") -> pathlib.Path:
    """The device runtime with the RPC test model (11,200-byte float tensors) on the board layer,
    built with the template's Makefile as bench/rpc.py builds its QEMU device."""
    from rpc_test_device import RUNTIME_DIR, TEST_MODEL, runtime_sources

    SERVER.write_board_files(boards.get_board(board_name, "cortex_m"), dest / "board", warning_as_error=True)
    sources = ["src/main_host_driven.c", "src/platform.c", *map(str, runtime_sources()), str(TEST_MODEL)]
    subprocess.run(["make", "-s", "-C", str(TEMPLATE_DIR), f"BOARD_DIR={dest / 'board'}", f"BUILD_DIR={dest / 'build'}",
                    f"APP_SRCS={' '.join(sources)}", f"EXTRA_CFLAGS=-I{RUNTIME_DIR / 'include'}"],
                   check=True, stdout=subprocess.DEVNULL)
    return dest / "build" / "firmware.elf"


def test_large_set_input_over_qemu_uart_completes_without_a_pile_of_resends(tmp_path):
    """Host-driven VWW (27,648 B of input) timed out in WRITE_INPUT on QEMU: the UART socket takes
    a request at once and the guest drains it at a pace that swings with the machine's load, so
    when it slowed, needless resends queued up behind each other. 33,600 bytes in 9 requests
    through the template's own timeouts must arrive intact, with a few resends at most, in a
    bounded time (the transfer itself takes 1-4 s here)."""
    elf = _rpc_test_firmware(tmp_path / "fw")
    data = np.random.default_rng(5).standard_normal((4, 700)).astype(np.float32)
    with QemuMachine(SERVER.qemu_machine(boards.get_board("mps2_an386", "cortex_m")), elf) as qemu:
        transport = SerialTransport(qemu.serial_url, timeouts=SERVER.Handler.TIMEOUTS)
        with Session(transport) as sess:
            start = time.monotonic()
            for k in range(3):
                sess.set_input(0, data + k)
            elapsed = time.monotonic() - start
            resends = sess.commands.resends
            sess.run()
            np.testing.assert_array_equal(sess.get_output(0), 2 * (data + 2) + 1)
    assert resends <= 3, resends
    assert elapsed < 15, elapsed
