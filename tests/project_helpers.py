"""Shared by tests/test_project_gen.py and tests/test_cli_micro.py: real MLF archives made with
`tvmc compile` (once per session and model) and tvmc run in a subprocess."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fixture_path

_compiled = {}

needs_cc = pytest.mark.skipif(not (shutil.which("make") and shutil.which("cc")),
                              reason="needs make and a C compiler (apt-get install make gcc)")


def tvmc(*argv, cwd=None, check=True) -> subprocess.CompletedProcess:
    """Run the tvmc command line as a user would; returns the completed process (text output)."""
    result = subprocess.run([sys.executable, "-m", "project_api", *map(str, argv)], cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"tvmc {' '.join(map(str, argv))} failed ({result.returncode}):\n{result.stderr}")
    return result


def compiled_mlf(tmp_path_factory, model_file: str) -> Path:
    """model.tar compiled from ../shared/fixtures/models/<model_file> (skips when absent)."""
    source = fixture_path("models", model_file)
    if model_file not in _compiled:
        out = tmp_path_factory.mktemp("mlf") / "model.tar"
        tvmc("compile", source, "-o", out, "--output-format", "mlf")
        _compiled[model_file] = out
    return _compiled[model_file]
