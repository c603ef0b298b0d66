"""``tvmc run --device micro`` end to end on the host board: real models compiled by tvmc compile,
real projects from the host template, and outputs equal to the same MLF run natively."""

import numpy as np
import pytest

import model_builders
from project_api.compiler.native import run_native
from project_helpers import compiled_mlf, needs_cc, tvmc
from rpc_test_device import compile_onnx, host_project

pytestmark = [pytest.mark.slow, needs_cc]

ONNX_MODELS = {
    "sine_mlp": model_builders.build_sine_mlp,
    "small_cnn": model_builders.build_small_cnn,
    "small_cnn_qdq": model_builders.build_small_cnn_qdq,
}
FIXTURE_MODELS = {
    "hello_world_float": "tflm_hello_world_float.tflite",
    "hello_world_int8": "tflm_hello_world_int8.tflite",
    "micro_speech": "tflm_micro_speech_quantized.tflite",
    "kws_int8": "mlperf_tiny_kws_ref_model_int8.tflite",
}


def _mlf(tmp_path_factory, name):
    if name in ONNX_MODELS:
        return compile_onnx(tmp_path_factory, ONNX_MODELS[name])
    return compiled_mlf(tmp_path_factory, FIXTURE_MODELS[name])


def _random_inputs(mlf, seed):
    from project_api.compiler.mlf import read_metadata

    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in read_metadata(mlf)["inputs"]:
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            inputs[spec["name"]] = rng.uniform(-2, 2, spec["shape"]).astype(dtype)
        else:
            info = np.iinfo(dtype)
            inputs[spec["name"]] = rng.integers(info.min, info.max, spec["shape"], endpoint=True, dtype=dtype)
    return inputs


@pytest.mark.parametrize("name", [*ONNX_MODELS, *FIXTURE_MODELS])
def test_outputs_equal_native_run(name, tmp_path_factory, tmp_path):
    mlf = _mlf(tmp_path_factory, name)
    project = host_project(tmp_path_factory, name, mlf)
    inputs = _random_inputs(mlf, seed=len(name))
    np.savez(tmp_path / "in.npz", **inputs)
    tvmc("run", "--device", "micro", project, "--inputs", tmp_path / "in.npz", "--outputs", tmp_path / "out.npz")
    native = run_native(mlf, inputs)
    with np.load(tmp_path / "out.npz") as out:
        assert sorted(out.files) == [f"output_{i}" for i in range(len(native))]
        for i, want in enumerate(native):
            got = out[f"output_{i}"]
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.array_equal(got, want), f"{name} output {i} differs from the native run"


def test_print_top_and_on_device_time(tmp_path_factory):
    mlf = _mlf(tmp_path_factory, "small_cnn")
    project = host_project(tmp_path_factory, "small_cnn", mlf)
    result = tvmc("run", "--device", "micro", project, "--fill-mode", "ones", "--print-top", "3",
                  "--print-time", "--repeat", "2", "--number", "5")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("top 3 of output_0 (")
    ones = {k: np.ones_like(v) for k, v in _random_inputs(mlf, 0).items()}
    want = run_native(mlf, ones)[0].reshape(-1)
    top = [int(line.split()[0]) for line in lines[2:5]]
    assert top == list(np.argsort(-want, kind="stable")[:3])
    assert "Execution time summary (on the device):" in result.stdout
    mean_ms = float(lines[lines.index("Execution time summary (on the device):") + 2].split()[0])
    assert mean_ms > 0


def test_user_errors_are_one_line(tmp_path_factory, tmp_path):
    mlf = _mlf(tmp_path_factory, "sine_mlp")
    project = host_project(tmp_path_factory, "sine_mlp", mlf)
    (name, value), = _random_inputs(mlf, 0).items()

    def error_of(*argv):
        result = tvmc("run", *argv, check=False)
        assert result.returncode == 1 and result.stdout == "", result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tvmc: error: "), result.stderr
        return lines[0]

    assert "does not exist" in error_of("--device", "micro", tmp_path / "nowhere")
    assert "not a generated project" in error_of("--device", "micro", tmp_path)
    np.savez(tmp_path / "wrong_name.npz", not_an_input=value)
    assert f"its inputs are: {name}" in error_of("--device", "micro", project, "--inputs", tmp_path / "wrong_name.npz")
    np.savez(tmp_path / "wrong_shape.npz", **{name: np.zeros((7, 7), np.float32)})
    message = error_of("--device", "micro", project, "--inputs", tmp_path / "wrong_shape.npz")
    assert f"input '{name}' must be float32 with shape {list(value.shape)}" in message
    assert "unknown project option" in error_of("--device", "micro", project, "--project-option", "nope=1")


def test_project_api_transport_reads_large_chunks(tmp_path_factory):
    """Through the project's server, reads carry everything the device has sent, not a byte
    per JSON-RPC call; the Session on top is exact."""
    from project_api import client
    from project_api.rpc.transport import ProjectAPITransport
    from project_api.session import Session

    mlf = _mlf(tmp_path_factory, "small_cnn")
    project = host_project(tmp_path_factory, "small_cnn", mlf)
    inputs = _random_inputs(mlf, seed=9)
    with client.instantiate_from_dir(project) as api:
        calls, received = [], []
        read_transport = api.read_transport

        def counting_read(n, timeout_sec):
            reply = read_transport(n, timeout_sec)
            calls.append(n)
            received.append(len(reply["data"]))
            return reply

        api.read_transport = counting_read
        with Session(ProjectAPITransport(api)) as session:
            for name, value in inputs.items():
                session.set_input(name, value)
            session.run()
            outputs = [session.get_output(i) for i in range(len(session.get_info().outputs))]
    assert all(np.array_equal(a, b) for a, b in zip(outputs, run_native(mlf, inputs)))
    assert min(calls) >= 4096  # every call asks for a large chunk
    assert sum(received) / len(received) > 20  # and gets whole packets back, not single bytes


def test_bad_paths_and_files_are_one_line_before_the_device_runs(tmp_path_factory, tmp_path, capfd):
    """Output paths are checked and input files read before the device starts (no model run is
    wasted, no traceback after it); a plain file for the project, a corrupt project.yaml and an
    unknown option each get one line that says what is wrong."""
    import shutil

    from project_api import cli

    mlf = _mlf(tmp_path_factory, "sine_mlp")
    project = host_project(tmp_path_factory, "sine_mlp", mlf)
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "inputs.txt").write_text("x = 1.5\n")
    np.save(tmp_path / "x.npy", np.zeros((1, 1), np.float32))

    def error_of(*argv):
        assert cli.main(["run", "--device", "micro", *map(str, argv)]) == 1
        err = capfd.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tvmc: error: "), err
        return lines[0]

    assert "cannot write --outputs" in error_of(project, "-o", tmp_path / "afile" / "out.npz")
    assert "afile is a file, not a directory" in error_of(project, "-o", tmp_path / "afile" / "out.npz")
    assert "/proc does not take new files" in error_of(project, "-o", "/proc/out.npz")
    assert "outdir is a directory" in error_of(project, "-o", tmp_path / "outdir")
    assert not (tmp_path / "outdir.npz").exists()
    with pytest.raises(SystemExit):
        cli.main(["run", "--device", "micro", str(project), "--print-time", "--number", str(2**32)])
    assert "more than the 4294967295 runs a device times in one measurement" in capfd.readouterr().err
    assert "inputs.txt is not an .npz archive" in error_of(project, "-i", tmp_path / "inputs.txt")
    assert "x.npy is a single-array .npy file" in error_of(project, "-i", tmp_path / "x.npy")
    assert "afile is a file, not a project directory" in error_of(tmp_path / "afile")
    line = error_of(project, "--project-option", "nope=1")
    assert "unknown project option(s) nope for platform host;" in line
    broken = tmp_path / "broken"
    shutil.copytree(project, broken, symlinks=True)
    (broken / "project.yaml").write_text("options: [unclosed\n")
    line = error_of(broken)
    assert "project.yaml is not valid YAML (line 2:" in line and "tvmc micro create -f" in line

    assert cli.main(["run", "--device", "micro", str(project), "-o", str(tmp_path / "out")]) == 0
    with np.load(tmp_path / "out.npz") as out:  # numpy's rule: ".npz" is appended, once
        assert out.files == ["output_0"]
