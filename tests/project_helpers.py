"""Shared by the tests of project generation, the CLI and the templates: real MLF archives made
with `tvmc compile` (once per session and model), tvmc run in a subprocess, template servers
loaded as modules."""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fixture_path

_compiled = {}
_servers = {}

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


def load_server(server_py: Path):
    """A template's or generated project's microtvm_api_server.py as a module (a script, not a
    package; every template's has that file name, so each is loaded once under a name of its own)."""
    server_py = Path(server_py).resolve()
    if server_py not in _servers:
        spec = importlib.util.spec_from_file_location(f"microtvm_api_server_{len(_servers)}", server_py)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # as an import does: the module's classes can find their file
        spec.loader.exec_module(module)
        _servers[server_py] = module
    return _servers[server_py]
