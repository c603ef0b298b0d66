"""The Zephyr side of the zephyr template: checks that west, a Zephyr tree of a supported version
in a west workspace and a toolchain are there (before anything runs), the exact `west build` /
`west flash` command lines, and why one failed. Every problem is one ServerError line saying
what to install or set."""

from __future__ import annotations

import glob
import os
import pathlib
import re
import shlex
import shutil
from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence

from project_api import server

# Zephyr 3.7 is the LTS release with the board names (hardware model v2) in boards.yaml; 4.x keeps them.
SUPPORTED_VERSIONS = "3.7 LTS and 4.x"


class ZephyrVersion(NamedTuple):
    major: int
    minor: int
    patch: int

    def __str__(self):
        return f"{self.major}.{self.minor}.{self.patch}"


def is_supported(version: ZephyrVersion) -> bool:
    return (version.major, version.minor) == (3, 7) or version.major == 4


def west_argv(west_cmd: Optional[str]) -> List[str]:
    """The west_cmd option as an argv prefix (e.g. "west" or "python3 -m west"), checked to exist."""
    argv = shlex.split(west_cmd or "west")
    if not argv:
        raise server.ServerError("the west_cmd option is empty; leave it unset to use `west` from PATH")
    if shutil.which(argv[0]) is None:
        raise server.ServerError(
            f"west command `{argv[0]}` not found: install west (pip install west, or pip install "
            f"'microtvm-projects[zephyr]') or point the west_cmd option at it")
    return argv


def zephyr_base_dir(zephyr_base: Optional[str]) -> pathlib.Path:
    """The Zephyr tree (the zephyr_base option, default $ZEPHYR_BASE), checked to be one."""
    if not zephyr_base:
        raise server.ServerError(
            "no Zephyr tree: set ZEPHYR_BASE (or the zephyr_base option) to the zephyr/ folder of a west "
            f"workspace (Zephyr {SUPPORTED_VERSIONS}; see docs/zephyr.md: west init + west update)")
    base = pathlib.Path(zephyr_base).expanduser()
    if not (base / "VERSION").is_file():
        raise server.ServerError(
            f"{base} is not a Zephyr tree (it has no VERSION file): set ZEPHYR_BASE or the zephyr_base option "
            "to the zephyr/ folder of a west workspace")
    return base


_VERSION_FIELD = re.compile(r"^\s*(VERSION_MAJOR|VERSION_MINOR|PATCHLEVEL)\s*=\s*(\d+)\s*$", re.MULTILINE)


def parse_version_file(text: str, where: str = "VERSION") -> ZephyrVersion:
    fields = dict(_VERSION_FIELD.findall(text))
    try:
        return ZephyrVersion(int(fields["VERSION_MAJOR"]), int(fields["VERSION_MINOR"]), int(fields.get("PATCHLEVEL", 0)))
    except KeyError as err:
        raise server.ServerError(f"{where} lacks {err.args[0]}: is this a Zephyr tree?") from None


def zephyr_version(base: pathlib.Path) -> ZephyrVersion:
    path = base / "VERSION"
    return parse_version_file(path.read_text(encoding="utf-8", errors="replace"), str(path))


def check_version(base: pathlib.Path) -> ZephyrVersion:
    version = zephyr_version(base)
    if not is_supported(version):
        raise server.ServerError(
            f"Zephyr {version} at {base} is not supported: use Zephyr {SUPPORTED_VERSIONS} "
            "(west init --mr v3.7-branch, or a v4 tag; see docs/zephyr.md)")
    return version


# Where find_package(Zephyr-sdk) looks when ZEPHYR_SDK_INSTALL_DIR is unset (besides CMake's
# user package registry).
_SDK_GLOBS = ("~/zephyr-sdk-*", "~/.local/zephyr-sdk-*", "~/.local/opt/zephyr-sdk-*", "~/bin/zephyr-sdk-*",
              "/opt/zephyr-sdk-*", "/usr/zephyr-sdk-*", "/usr/local/zephyr-sdk-*")

_NO_TOOLCHAIN_HINT = (
    "install the Zephyr SDK (and set ZEPHYR_SDK_INSTALL_DIR), or use a cross compiler, e.g. Debian's "
    "gcc-arm-none-eabi for Arm boards: ZEPHYR_TOOLCHAIN_VARIANT=cross-compile CROSS_COMPILE=/usr/bin/arm-none-eabi-")


def _find_zephyr_sdk(env: Mapping[str, str]) -> Optional[pathlib.Path]:
    home = env.get("HOME") or os.path.expanduser("~")

    def expand(path: str) -> str:
        return home + path[1:] if path.startswith("~") else path

    candidates = []
    if env.get("ZEPHYR_SDK_INSTALL_DIR"):
        candidates.append(pathlib.Path(expand(env["ZEPHYR_SDK_INSTALL_DIR"])))
    registry = pathlib.Path(expand("~/.cmake/packages/Zephyr-sdk"))
    if registry.is_dir():
        for entry in sorted(registry.iterdir()):
            try:  # each entry holds the folder of Zephyr-sdkConfig.cmake: SDK/cmake
                candidates.append(pathlib.Path(entry.read_text(encoding="utf-8").strip()).parent)
            except OSError:
                continue
    for pattern in _SDK_GLOBS:
        candidates.extend(pathlib.Path(p) for p in sorted(glob.glob(expand(pattern))))
    return next((c for c in candidates if (c / "sdk_version").is_file()), None)


def check_toolchain(env: Mapping[str, str]) -> str:
    """Describe the toolchain Zephyr will use (ZEPHYR_TOOLCHAIN_VARIANT), or raise saying what to set."""
    variant = env.get("ZEPHYR_TOOLCHAIN_VARIANT", "") or "zephyr"
    if variant == "zephyr":
        sdk = _find_zephyr_sdk(env)
        if sdk is None:
            raise server.ServerError(f"no Zephyr toolchain found: {_NO_TOOLCHAIN_HINT}")
        return f"Zephyr SDK at {sdk}"
    if variant == "cross-compile":
        prefix = env.get("CROSS_COMPILE", "")
        if not prefix:
            raise server.ServerError(
                "ZEPHYR_TOOLCHAIN_VARIANT=cross-compile needs CROSS_COMPILE, the compiler prefix "
                "(e.g. CROSS_COMPILE=/usr/bin/arm-none-eabi-)")
        if shutil.which(prefix + "gcc", path=env.get("PATH")) is None:
            raise server.ServerError(
                f"CROSS_COMPILE={prefix}: {prefix}gcc not found; install the cross compiler (Debian: "
                "apt-get install --no-install-recommends gcc-arm-none-eabi) or fix CROSS_COMPILE")
        return f"cross compiler {prefix}gcc"
    if variant == "gnuarmemb":
        path = env.get("GNUARMEMB_TOOLCHAIN_PATH", "")
        gcc = pathlib.Path(path) / "bin" / "arm-none-eabi-gcc"
        if not path or not gcc.is_file():
            raise server.ServerError(
                f"ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb needs GNUARMEMB_TOOLCHAIN_PATH with bin/arm-none-eabi-gcc "
                f"(got {path or 'nothing'})")
        return f"GNU Arm Embedded toolchain at {path}"
    if variant == "llvm":
        if shutil.which("clang", path=env.get("PATH")) is None:
            raise server.ServerError("ZEPHYR_TOOLCHAIN_VARIANT=llvm needs clang on PATH (apt-get install clang)")
        return "LLVM (clang)"
    return f"toolchain variant {variant}"  # others (armclang, iar, xcc ...) are Zephyr's to check


def check_build_tools(env: Mapping[str, str]) -> None:
    for tool, package in (("cmake", "cmake"), ("ninja", "ninja-build")):
        if shutil.which(tool, path=env.get("PATH")) is None:
            raise server.ServerError(
                f"west build needs `{tool}` (Zephyr: CMake >= 3.20 and Ninja): apt-get install {package}, "
                f"or pip install {tool}")


def find_west_workspace(*starts: pathlib.Path) -> Optional[pathlib.Path]:
    """The west workspace (the folder holding .west/) west will use: it looks upwards from the
    current directory, then from ZEPHYR_BASE. Without one west has no `build` command."""
    for start in starts:
        for folder in (start, *start.parents):
            if (folder / ".west").is_dir():
                return folder
    return None


def check_workspace(zephyr_base: pathlib.Path, cwd: pathlib.Path) -> pathlib.Path:
    workspace = find_west_workspace(cwd.resolve(), zephyr_base.resolve())
    if workspace is None:
        raise server.ServerError(
            f"{zephyr_base} is not inside a west workspace, so west has no build command: run "
            f"`west init -l {zephyr_base}` (then `west update cmsis picolibc`, see docs/zephyr.md) "
            "or point ZEPHYR_BASE at the zephyr/ folder of a workspace made by west init")
    return workspace


class WestEnvironment(NamedTuple):
    west: List[str]  # argv prefix
    zephyr_base: pathlib.Path
    version: ZephyrVersion
    env: Dict[str, str]  # for the west subprocess (ZEPHYR_BASE set)


def check_environment(options: Mapping, *, need_toolchain: bool, cwd: pathlib.Path,
                      environ: Optional[Mapping[str, str]] = None) -> WestEnvironment:
    """Everything `west build` (need_toolchain) or `west flash` needs, run from cwd, checked before running it."""
    env = dict(os.environ if environ is None else environ)
    west = west_argv(options.get("west_cmd"))
    base = zephyr_base_dir(options.get("zephyr_base") or env.get("ZEPHYR_BASE"))
    version = check_version(base)
    check_workspace(base, cwd)
    if need_toolchain:
        check_build_tools(env)
        check_toolchain(env)
    env["ZEPHYR_BASE"] = str(base)
    return WestEnvironment(west, base, version, env)


# ---- command lines --------------------------------------------------------------------------


def build_command(west: Sequence[str], zephyr_board: str, project_dir: pathlib.Path, build_dir: pathlib.Path,
                  verbose: bool = False) -> List[str]:
    """`west build` of the project for one board (pristine when the board or source changed)."""
    argv = list(west) + (["-v"] if verbose else []) + [
        "build", "-b", zephyr_board, "-d", str(build_dir), "-p", "auto", str(project_dir)]
    if verbose:
        argv.append("--build-opt=-v")  # ninja prints each compiler command
    return argv


def _runner_serial_args(runner: str, serial_number: str) -> List[str]:
    """How each flash runner is told which probe to use."""
    if runner == "openocd":
        return ["--cmd-pre-init", f"adapter serial {serial_number}"]
    return ["--dev-id", serial_number]  # nrfjprog, nrfutil, jlink, pyocd, stm32cubeprogrammer, linkserver


def flash_command(west: Sequence[str], build_dir: pathlib.Path, runner: str,
                  serial_number: Optional[str] = None) -> List[str]:
    argv = list(west) + ["flash", "-d", str(build_dir), "-r", runner]
    if serial_number:
        argv += _runner_serial_args(runner, serial_number)
    return argv


# ---- why a west command failed ------------------------------------------------------------------

_LINK_OVERFLOW = re.compile(r"region `?(\w+)'? overflowed by (\d+) bytes")
# Kconfig's complaints when a module the board needs is not in the workspace (found by west, or
# listed in ZEPHYR_MODULES): each with what to do about it.
_MISSING_MODULES = (
    (re.compile(r"HAS_CMSIS_CORE \(defined at [^)]*\) has direct dependencies 0"),
     "Zephyr's CMSIS module is not in the workspace (Arm boards need it): `west update cmsis` "
     "(Zephyr >= 4.1: cmsis_6), or add its folder to ZEPHYR_MODULES"),
    (re.compile(r"choice symbol PICOLIBC .* was selected"),
     "no picolibc: `west update picolibc` (Zephyr's picolibc module), or use a toolchain that has it "
     "(the Zephyr SDK), or add the module's folder to ZEPHYR_MODULES"),
)
# Lines that say why a build failed: compiler and linker diagnostics, CMake's and west's errors.
# Ninja's progress lines ("[12/980] Building C object .../strerror.c.obj") are never among them.
_FAILURE_LINE = re.compile(r"error:|undefined reference|CMake Error|FATAL ERROR|No such file", re.IGNORECASE)
_NINJA_PROGRESS = re.compile(r"^\[\d+/\d+\] ")


def explain_failure(what: str, returncode: int, output: str) -> str:
    """One line saying why `west build`/`west flash` failed, from its output."""
    overflow = _LINK_OVERFLOW.findall(output)
    if overflow:
        return ("the firmware does not fit the board: " + "; ".join(f"{r} overflowed by {int(n):,} B" for r, n in overflow)
                + ". Pick a board with more memory, a smaller model or a smaller config_main_stack_size")
    flat = " ".join(output.split())  # Kconfig wraps its warnings over several lines
    missing = [hint for pattern, hint in _MISSING_MODULES if pattern.search(flat)]
    if missing:
        return f"{what} failed: " + "; ".join(missing)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reasons = [line for line in lines if _FAILURE_LINE.search(line) and not _NINJA_PROGRESS.match(line)]
    return f"{what} failed (exit status {returncode}): " + " | ".join(reasons[:3] or lines[-3:])
