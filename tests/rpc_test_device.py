"""Builds the RPC layer's test device: the real device runtime and the host board's main.c linked
with tests/c/rpc_test_model.c (a hand-written TEST model, used only by the RPC tests and
bench/rpc.py). Real models go through the real host template instead (tests/test_cli_run.py)."""

import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIR = REPO_ROOT / "template_projects" / "device_runtime"
HOST_MAIN = REPO_ROOT / "template_projects" / "host" / "src" / "main.c"
TEST_MODEL = REPO_ROOT / "tests" / "c" / "rpc_test_model.c"
WARNINGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror"]


def runtime_sources():
    return sorted((RUNTIME_DIR / "src").glob("*.c"))


def build_test_device(out: Path, cc: str = "gcc", defines=()) -> Path:
    """Compile the test device program to `out` (warnings are errors) and return its path."""
    if shutil.which(cc) is None:
        raise FileNotFoundError(f"{cc} is not installed")
    command = [cc, *WARNINGS, "-O2", *[f"-D{d}" for d in defines], f"-I{RUNTIME_DIR / 'include'}",
               *map(str, runtime_sources()), str(HOST_MAIN), str(TEST_MODEL), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the test device failed:\n{' '.join(command)}\n{result.stderr}")
    return out


def expected_outputs(in_f32, in_i8):
    """What rpc_test_model.c computes, in numpy."""
    return in_f32 * 2 + 1, -in_i8[::-1]


_PROJECTS = {}
_MLFS = {}


def host_project(tmp_path_factory, name: str, mlf: Path) -> Path:
    """A built host-board project for a real MLF (``tvmc micro create`` + ``tvmc micro build``),
    once per test session and name."""
    from project_helpers import tvmc

    if name not in _PROJECTS:
        project = tmp_path_factory.mktemp(f"project_{name}") / "project"
        tvmc("micro", "create", project, mlf, "host")
        tvmc("micro", "build", project, "host")
        _PROJECTS[name] = project
    return _PROJECTS[name]


def compile_onnx(tmp_path_factory, builder) -> Path:
    """An MLF compiled with ``tvmc compile`` from a tests/model_builders.py builder."""
    from project_helpers import tvmc

    if builder.__name__ not in _MLFS:
        work = tmp_path_factory.mktemp(builder.__name__)
        model = builder(work / "model.onnx")
        mlf = work / "model.tar"
        tvmc("compile", model, "-o", mlf, "--output-format", "mlf")
        _MLFS[builder.__name__] = mlf
    return _MLFS[builder.__name__]
