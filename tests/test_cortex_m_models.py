"""Real models on emulated Cortex-M boards, through the user's commands: `tvmc compile`,
`tvmc micro create/build/flash` and `tvmc run --device micro` on QEMU, each output equal to the
host-native build of the same archive (project_api.compiler.native.run_native)."""

import numpy as np
import pytest

import model_builders
from cortex_m_helpers import needs_arm_tools
from project_api import project_gen, standalone
from project_api.compiler.native import run_native
from project_api.emulators.qemu import run_to_exit
from project_helpers import compiled_mlf, tvmc

pytestmark = [needs_arm_tools, pytest.mark.slow]

FIXTURE_MODELS = {
    "sine_float": "tflm_hello_world_float.tflite",
    "sine_int8": "tflm_hello_world_int8.tflite",
    "micro_speech": "tflm_micro_speech_quantized.tflite",
    "kws": "mlperf_tiny_kws_ref_model_int8.tflite",
}


@pytest.fixture(scope="session")
def cnn_mlf(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    onnx_path = model_builders.build_small_cnn(root / "cnn.onnx")
    tvmc("compile", onnx_path, "-o", root / "cnn.tar")
    return root / "cnn.tar"


@pytest.fixture
def mlf_of(tmp_path_factory, cnn_mlf):
    def get(model):
        return cnn_mlf if model == "cnn" else compiled_mlf(tmp_path_factory, FIXTURE_MODELS[model])
    return get


def _random_inputs(model: project_gen.ModelInfo, seed: int = 7):
    rng = np.random.default_rng(seed)
    inputs = {}
    for t in model.inputs:
        dtype = np.dtype(t.dtype)
        if dtype.kind == "f":
            inputs[t.name] = rng.uniform(-1.5, 1.5, t.shape).astype(dtype)
        else:
            info = np.iinfo(dtype)
            inputs[t.name] = rng.integers(info.min, info.max, t.shape, dtype=dtype, endpoint=True)
    return inputs


def _create_build_flash(mlf, project, board, *options):
    tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", f"board={board}",
         "warning_as_error=true", *options)
    tvmc("micro", "build", project, "cortex_m")
    tvmc("micro", "flash", project, "cortex_m")


@pytest.mark.parametrize("board,model", [
    ("mps2_an386", "sine_float"),
    ("mps2_an386", "sine_int8"),
    ("mps2_an386", "cnn"),
    ("mps2_an386", "micro_speech"),
    ("mps2_an386", "kws"),
    ("lm3s6965evb", "sine_float"),
])
def test_tvmc_run_on_qemu_equals_native(mlf_of, tmp_path, board, model):
    mlf = mlf_of(model)
    info = project_gen.read_mlf(mlf)
    inputs = _random_inputs(info)
    np.savez(tmp_path / "in.npz", **inputs)
    project = tmp_path / "project"
    _create_build_flash(mlf, project, board, "project_type=host_driven")
    tvmc("run", "--device", "micro", project, "--inputs", tmp_path / "in.npz", "--outputs", tmp_path / "out.npz")
    expected = run_native(mlf, inputs)
    with np.load(tmp_path / "out.npz") as got:
        assert len(got.files) == len(expected)
        for index, want in enumerate(expected):
            np.testing.assert_array_equal(got[f"output_{index}"], want, err_msg=f"{model} on {board}")


@pytest.mark.parametrize("model", ["sine_float", "kws"])
def test_standalone_image_equals_native(mlf_of, tmp_path, model):
    mlf = mlf_of(model)
    info = project_gen.read_mlf(mlf)
    inputs = _random_inputs(info, seed=11)
    np.savez(tmp_path / "in.npz", **inputs)
    project = tmp_path / "project"
    _create_build_flash(mlf, project, "mps2_an386", "project_type=standalone",
                        f"standalone_inputs={tmp_path / 'in.npz'}")
    status, output = run_to_exit("mps2-an386", project / "build" / "firmware.elf", 60)
    result = standalone.parse(output.decode(), info.outputs)
    assert status == 0 and result["status"] == 0
    for got, want in zip(result["outputs"], run_native(mlf, inputs)):
        np.testing.assert_array_equal(got, want)


def test_model_too_large_for_flash_fails_at_create(tmp_path_factory, tmp_path):
    """MLPerf Tiny AD: 270,880 B of constants > lm3s6965evb's 256 KiB flash (metadata sizes)."""
    mlf = compiled_mlf(tmp_path_factory, "mlperf_tiny_ad01_int8.tflite")
    result = tvmc("micro", "create", tmp_path / "p", mlf, "cortex_m", "--project-option", "board=lm3s6965evb",
                  check=False)
    assert result.returncode == 1
    assert "270,880 B of constants but board lm3s6965evb has 262,144 B of flash" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p").exists()


def test_model_too_large_for_ram_fails_at_build(tmp_path_factory, tmp_path):
    """MLPerf Tiny IC ResNet-8: arena 49,152 B + I/O 3,082 B pass the metadata check on lm3s6965evb's
    64 KiB RAM, but not with the stack and the RPC buffers: the link fails, and says so with sizes."""
    mlf = compiled_mlf(tmp_path_factory, "mlperf_tiny_ic_resnet8_pretrainedResnet_quant.tflite")
    project = tmp_path / "p"
    tvmc("micro", "create", project, mlf, "cortex_m", "--project-option", "board=lm3s6965evb")
    result = tvmc("micro", "build", project, "cortex_m", check=False)
    assert result.returncode == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("tvmc: error")]
    assert error and "does not fit board lm3s6965evb" in error[0] and "of 65,536 B (too big)" in error[0], result.stderr


def test_same_model_fits_with_a_smaller_stack_and_packet_buffers(tmp_path_factory, tmp_path):
    """The IC ResNet-8 that overflows lm3s6965evb's RAM by default fits with a 4 KiB stack and
    1 KiB RPC packets (stack_size_bytes, compile_definitions), and computes what the host does."""
    mlf = compiled_mlf(tmp_path_factory, "mlperf_tiny_ic_resnet8_pretrainedResnet_quant.tflite")
    inputs = _random_inputs(project_gen.read_mlf(mlf))
    np.savez(tmp_path / "in.npz", **inputs)
    project = tmp_path / "project"
    _create_build_flash(mlf, project, "lm3s6965evb", "stack_size_bytes=4096", "compile_definitions=MTP_MAX_PACKET=1024")
    tvmc("run", "--device", "micro", project, "--inputs", tmp_path / "in.npz", "--outputs", tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as got:
        np.testing.assert_array_equal(got["output_0"], run_native(mlf, inputs)[0])
