"""Every int8 fixture model, compiled to integer kernels, bit-exact with tflite-micro on an emulated
Cortex-M4F (QEMU mps2-an386, the DSP micro-kernels: SMLAD/SXTB16), and two of them on a Cortex-M3
(mps2-an385, the portable C path): one host-driven firmware per model and board, built with
-Werror for the board's -mcpu, ten random inputs through a real RPC session."""

import numpy as np
import pytest

import model_builders
from cortex_m_helpers import needs_arm_tools
from conftest import fixture_path
from project_api.compiler.mlf import export_mlf
from project_api.rpc.transport import ProjectAPITransport
from project_api.session import Session
from project_helpers import tvmc
from test_compile_accuracy import _tflite_micro

pytestmark = [needs_arm_tools, pytest.mark.slow]

INPUTS = 10
INT8_FIXTURES = [
    "tflm_hello_world_int8",
    "tflm_micro_speech_quantized",
    "mlperf_tiny_kws_ref_model_int8",
    "mlperf_tiny_ic_resnet8_pretrainedResnet_quant",
    "mlperf_tiny_ad01_int8",
]


def _session_outputs(project, inputs, input_name):
    from project_api.cli._options import options_for_project, project_api_server

    with project_api_server(project) as api:
        transport = ProjectAPITransport(api, options_for_project(project, {}))
        with Session(transport, run_timeout_sec=120) as session:
            outputs = []
            for x in inputs:
                session.set_input(input_name, x)
                session.run()
                outputs.append(session.get_output(0))
            return outputs


@pytest.mark.parametrize("board,name", [("mps2_an386", name) for name in INT8_FIXTURES] + [
    ("mps2_an385", "tflm_micro_speech_quantized"),
    ("mps2_an385", "mlperf_tiny_kws_ref_model_int8"),
])
def test_int8_fixture_bit_exact_with_tflite_micro_on_qemu(board, name, tmp_path):
    path = fixture_path("models", f"{name}.tflite")
    lowered = model_builders.lower_once(path)
    mlf = export_mlf(lowered, tmp_path / "model.tar")
    project = tmp_path / "project"
    tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", f"board={board}",
         "project_type=host_driven", "warning_as_error=true")
    tvmc("micro", "build", project, "cortex_m")
    tvmc("micro", "flash", project, "cortex_m")
    (input_name,) = lowered.inputs
    rng = np.random.default_rng(2024)
    shape = lowered.tensors[input_name].shape
    inputs = [rng.integers(-128, 128, shape).astype(np.int8) for _ in range(INPUTS)]
    ours = _session_outputs(project, inputs, input_name)
    reference = _tflite_micro(path, inputs)
    for run, (o, m) in enumerate(zip(ours, reference)):
        difference = int(np.abs(o.astype(np.int32) - m.astype(np.int32)).max())
        assert difference == 0, f"{name} input {run}: {difference} LSB from tflite-micro on QEMU {board}"
