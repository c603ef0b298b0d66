"""The templates and the board catalogue work from an installed wheel, not only from a checkout.

Builds the wheel (pip wheel --no-deps, no build isolation so it works offline) from a temporary
copy of the checkout's files as git sees them (tracked, or new and not ignored): building writes
build/ and *.egg-info beside the sources, and stale copies there must not end up in the checkout.
Installs it into a fresh venv that sees the system site-packages (TVM etc. are not reinstalled),
and runs that venv's python and tvmc from a folder outside the checkout.
"""

import pathlib
import shutil
import subprocess
import sys
import venv

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    had_build_dir = (REPO_ROOT / "build").exists()
    source = _copy_of_checkout(root / "source")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(root / "dist"), str(source)], check=True, cwd=root)
    if not had_build_dir:
        assert not (REPO_ROOT / "build").exists(), "building the wheel wrote build/ into the checkout"
    (wheel,) = (root / "dist").glob("microtvm_projects-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # The venv has no pip of its own; `python -m pip` there runs the system's pip module (visible
    # through the system site-packages) and installs into the venv.
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, cwd=root)
    return env_dir


def _copy_of_checkout(dest: pathlib.Path) -> pathlib.Path:
    """The files git would commit (tracked, or new and not ignored), copied to dest."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO_ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"needs git and a git checkout to list the sources ({err})")
    for name in filter(None, listed.decode().split("\0")):
        src = REPO_ROOT / name
        if src.is_file():  # listed but deleted in the work tree: not part of it
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _run(env_dir, argv, cwd):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          env={"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)})


def test_resources_resolve_inside_the_installed_package(wheel_venv, tmp_path):
    script = ("import project_api, project_api.resources as r, project_api.boards as b\n"
              "print(project_api.__file__)\n"
              "print(r.template_dir('host'))\n"
              "print(r.device_runtime_dir())\n"
              "print(r.boards_file())\n"
              "print(','.join(r.available_templates()))\n"
              "print(b.get_board('crt').name)\n")
    result = _run(wheel_venv, [str(wheel_venv / "bin" / "python"), "-c", script], tmp_path)
    assert result.returncode == 0, result.stderr
    package, host, runtime, boards_file, templates, board = result.stdout.splitlines()
    site_packages = str(wheel_venv / "lib")
    assert package.startswith(site_packages), package
    for path in (host, runtime, boards_file):
        assert path.startswith(site_packages) and "/project_api/_data/" in path, path
    assert pathlib.Path(host, "microtvm_api_server.py").is_file()
    assert pathlib.Path(host, "Makefile").is_file()
    assert pathlib.Path(runtime, "include", "mtp_model.h").is_file()
    assert "host" in templates.split(",")
    assert board == "host"


def test_the_compilers_c_files_travel_in_the_wheel(wheel_venv, tmp_path):
    """The integer kernels' C (project_api/compiler/c/*.h) is read at import: package data."""
    script = ("import project_api.compiler.qnn_micro_kernels as m\n"
              "print(m.C_DIR)\n"
              "print(sorted(p.name for p in m.C_DIR.glob('*.h')))\n"
              "print(len(m.FIXED_POINT_C), len(m.MICRO_KERNELS_C), len(m.WIDENED_C))\n")
    result = _run(wheel_venv, [str(wheel_venv / "bin" / "python"), "-c", script], tmp_path)
    assert result.returncode == 0, result.stderr
    c_dir, names, sizes = result.stdout.splitlines()
    assert c_dir.startswith(str(wheel_venv / "lib")), c_dir
    expected = sorted(p.name for p in (REPO_ROOT / "project_api" / "compiler" / "c").glob("*.h"))
    assert names == str(expected)
    assert all(int(size) > 1000 for size in sizes.split())


def test_installed_tvmc_lists_host_options(wheel_venv, tmp_path):
    tvmc = wheel_venv / "bin" / "tvmc"
    result = _run(wheel_venv, [str(tvmc), "micro", "create", "proj", "model.tar", "host", "--list-options"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "board=VALUE" in result.stdout and "host, crt, native" in result.stdout


def test_legacy_mlf_shim_is_inside_the_installed_package(wheel_venv, tmp_path):
    """Legacy archives are translated with the C shim from project_api/mlf/legacy_shim/."""
    script = ("import os, project_api.mlf.legacy as legacy\n"
              "print(legacy.SHIM_DIR)\n"
              "print(','.join(sorted(os.listdir(legacy.SHIM_DIR))))\n")
    result = _run(wheel_venv, [str(wheel_venv / "bin" / "python"), "-c", script], tmp_path)
    assert result.returncode == 0, result.stderr
    shim_dir, files = result.stdout.splitlines()
    assert shim_dir.startswith(str(wheel_venv / "lib")), shim_dir
    assert set(files.split(",")) >= {"tvm_legacy_shim.c", "tvm_legacy_shim.h", "tvm_legacy_kernels.h"}
