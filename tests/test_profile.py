"""``tvmc run --profile``: the profiling build of the static runtime (-DTVMGEN_PROFILE) and the
PROFILE_RUNS command. On mps2_an386 (QEMU -icount) the KWS kernels' instruction counts sum to
within 2% of time_evaluate's whole-model figure in the same run; off, the build has no trace of it."""

import re
import shutil
import struct
import subprocess

import pytest

import project_helpers
from project_api import client
from project_api.rpc.transport import ProjectAPITransport
from project_api.session import Session
from project_api.rpc.commands import CAP_PROFILE, CommandClient
from model_builders import build_sine_mlp
from project_api.report import describe_mlf
from rpc_test_device import RUNTIME_DIR, WARNINGS, compile_onnx, host_project, runtime_sources
from test_device_runtime import CROSS_COMPILERS

KWS = "mlperf_tiny_kws_ref_model_int8.tflite"


def _rows(stdout):
    """The profile table's rows: {call index or label: [numbers]}."""
    table = stdout[stdout.index("Per-kernel profile"):].splitlines()[2:]
    rows = {}
    for line in table:
        if not line.startswith("  "):
            break
        label = re.match(r"\s+(\d+\s+\S+|\s*[a-z][a-z ()_]+?)\s{2,}", line).group(1).strip()
        rows[label] = [float(v.replace(",", "")) for v in re.findall(r"[\d,]+\.?\d*", line[len(label) + 4:])
                       if v.replace(",", "").replace(".", "")]
    return rows


@pytest.mark.slow
def test_kws_profile_on_mps2_an386_sums_to_time_evaluate(tmp_path_factory):
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    mlf = project_helpers.compiled_mlf(tmp_path_factory, KWS)
    project = tmp_path_factory.mktemp("profile") / "kws_an386"
    project_helpers.tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", "board=mps2_an386",
                         "compile_definitions=TVMGEN_PROFILE", "warning_as_error=true")
    project_helpers.tvmc("micro", "build", project, "cortex_m")
    report = project.parent / "report.html"
    result = project_helpers.tvmc("run", "--device", "micro", project, "--profile", "--number", "3",
                                  "--report", report)
    rows = _rows(result.stdout)
    kernels = {k: v for k, v in rows.items() if k[0].isdigit()}
    assert len(kernels) == 12
    times = [v[0] for v in kernels.values()]
    assert times == sorted(times, reverse=True)  # sorted by time
    kernel_instructions = sum(v[2] for v in kernels.values())
    whole = rows["whole model (time_evaluate)"][2]
    assert rows["sum of kernels"][2] == pytest.approx(kernel_instructions, abs=len(kernels))
    assert abs(kernel_instructions - whole) <= 0.02 * whole, (kernel_instructions, whole)
    assert "instructions/MAC" in result.stdout and "-icount" in result.stdout
    page = report.read_text()
    assert "Profile (measured on the device)" in page and f"{whole:,.0f}" in page

    # The smallest packet the protocol allows holds 3 table entries a reply: the host pages
    # through the table with number 0, and gets the same deterministic counts.
    with client.instantiate_from_dir(project) as api, \
            Session(ProjectAPITransport(api), max_packet=64) as sess:
        profiled = sess.profile(3)
    assert len(profiled.call_ticks) == 12 and profiled.runs == 3
    per_run = [t / 3 * 1e9 / profiled.timer_hz for t in profiled.call_ticks]
    for index, instructions in enumerate(per_run):
        assert instructions == pytest.approx(kernels[next(k for k in kernels if k.split()[0] == str(index))][2],
                                             abs=40)
    assert sum(profiled.call_ticks) <= profiled.ticks


@pytest.fixture(scope="module")
def sine_mlf(tmp_path_factory):
    return compile_onnx(tmp_path_factory, build_sine_mlp)  # shared with the other host-board tests


@pytest.mark.slow
def test_host_profile_build_and_plain_build(tmp_path_factory, sine_mlf):
    profiled = tmp_path_factory.mktemp("host_profile") / "profiled"
    project_helpers.tvmc("micro", "create", profiled, sine_mlf, "host", "--project-option",
                         "compile_definitions=TVMGEN_PROFILE")
    project_helpers.tvmc("micro", "build", profiled, "host")
    result = project_helpers.tvmc("run", "--device", "micro", profiled, "--profile", "--number", "50")
    kernels = {k: v for k, v in _rows(result.stdout).items() if k[0].isdigit()}
    assert len(kernels) == len(describe_mlf(sine_mlf).kernels) and "times only" in result.stdout
    # A plain build answers no PROFILE_RUNS: one line saying how to get a profiling build.
    plain = host_project(tmp_path_factory, "sine_mlp", sine_mlf)
    result = project_helpers.tvmc("run", "--device", "micro", plain, "--profile", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "compile_definitions=TVMGEN_PROFILE" in result.stderr.strip().splitlines()[-1]


def test_profiling_is_compiled_out_by_default(tmp_path, sine_mlf):
    """Without TVMGEN_PROFILE the preprocessed runtime is the plain call sequence: no timer reads,
    no tick table."""
    from project_api.compiler.mlf import extract_mlf

    mlf_dir = extract_mlf(sine_mlf, tmp_path / "mlf")
    source = mlf_dir / "codegen/host/src/default_runtime.c"
    include = mlf_dir / "codegen/host/include"
    plain = subprocess.run(["gcc", "-E", "-P", f"-I{include}", str(source)], capture_output=True, text=True,
                           check=True).stdout
    profiled = subprocess.run(["gcc", "-E", "-P", "-DTVMGEN_PROFILE", f"-I{include}", str(source)],
                              capture_output=True, text=True, check=True).stdout
    calls = len(describe_mlf(sine_mlf).kernels)
    assert "tvmgen_profile_ticks" not in plain and "call_ticks" not in plain
    assert plain.count("status = (tvmgen_default_") == calls
    assert profiled.count("tvmgen_profile_ticks()") == 2 * calls


@pytest.mark.parametrize("cc", sorted(CROSS_COMPILERS))
def test_profiling_runtime_is_warning_free_c99(cc, tmp_path):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} is not installed")
    for source in runtime_sources():
        command = [cc, *WARNINGS, *CROSS_COMPILERS[cc], "-DTVMGEN_PROFILE", "-Os", f"-I{RUNTIME_DIR / 'include'}",
                   "-c", str(source), "-o", str(tmp_path / (source.stem + ".o"))]
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


class _FakeClient(CommandClient):
    def __init__(self, reply):
        self.reply = reply
        self.max_packet = 64

    def call(self, command, args=b"", timeout_sec=None, reply_bytes=16):
        return self.reply


def test_info_capabilities_are_negotiated_backward_compatibly():
    fixed = struct.pack("<BBBBIIBHHIB", 1, 0, 1, 0, 4096, 25_000_000, 0, 1, 1, 16000, 7) + b"default"
    assert _FakeClient(fixed).info().capabilities == 0  # an older runtime sends no capability byte
    info = _FakeClient(fixed + bytes([CAP_PROFILE])).info()
    assert info.can_profile and info.model_name == "default"
