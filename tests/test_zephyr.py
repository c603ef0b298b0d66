"""The Zephyr template (template_projects/zephyr): project generation for every board and project
type, option handling, the exact west command lines, the missing-tool errors, and the device
helpers (devicetree baud rate, serial port choice, QEMU command line).

CI has no Zephyr tree: generation and the checks run for real; the west command lines are checked
by running the real server with a recording `west` on PATH (see test_build_and_flash_run_west);
the server's QEMU transport runs on real QEMU with the cortex_m template's firmware standing in
for zephyr.elf (test_qemu_transport_serves_host_driven_inference).
test_zephyr_qemu_host_driven_inference builds and runs a real project when $ZEPHYR_BASE is set.
"""

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
import time

import numpy as np
import pytest

from conftest import REPO_ROOT
from project_helpers import compiled_mlf, load_server
from project_api import boards, client, server

TEMPLATE_DIR = REPO_ROOT / "template_projects" / "zephyr"
sys.path.insert(0, str(TEMPLATE_DIR))
import zephyr_config  # noqa: E402
import zephyr_device  # noqa: E402
import zephyr_west  # noqa: E402


SERVER = load_server(TEMPLATE_DIR / "microtvm_api_server.py")
ZEPHYR_BOARDS = boards.all_boards("zephyr")
PROJECT_TYPES = ("host_driven", "aot_standalone_demo")


@pytest.fixture(scope="session")
def hello_mlf(tmp_path_factory):
    """The TFLM hello_world float model compiled by the real `tvmc compile` (once per session)."""
    return compiled_mlf(tmp_path_factory, "tflm_hello_world_float.tflite")


def generate(mlf, project_dir, **given):
    """generate_project through the framework's option handling, as a client's call would go."""
    options = server.resolve_options("generate_project", SERVER.Handler.PROJECT_OPTIONS, given)
    SERVER.Handler().generate_project(pathlib.Path(mlf), None, pathlib.Path(project_dir), options)
    return pathlib.Path(project_dir)


def prj_conf(project_dir):
    return dict(line.split("=", 1) for line in (project_dir / "prj.conf").read_text().splitlines()
                if line and not line.startswith("#"))


# ---- generation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("project_type", PROJECT_TYPES)
def test_generate_every_board(hello_mlf, tmp_path, project_type):
    for board in ZEPHYR_BOARDS:
        project = generate(hello_mlf, tmp_path / board.name, board=board.zephyr_board, project_type=project_type)
        for path in ("CMakeLists.txt", "prj.conf", "mtp_project.cmake", "project.yaml", "model.tar",
                     "src/main.c", "src/model_glue.c", "microtvm_api_server.py", "zephyr_west.py"):
            assert (project / path).is_file(), f"{board.name}: {path} missing"
        assert list((project / "device_runtime" / "src").glob("*.c")), "the device runtime was not copied"
        assert list((project / "model" / "codegen" / "host" / "src").glob("*.c")), "the model sources were not extracted"
        assert not (project / "src" / "host_driven").exists() and not (project / "src" / "aot_standalone_demo").exists()
        main_c = (project / "src" / "main.c").read_text()
        template_main = (TEMPLATE_DIR / "src" / project_type / "main.c").read_text()
        assert main_c == template_main
        assert ("mtp_rpc_server_run()" in main_c) == (project_type == "host_driven")

        conf = prj_conf(project)
        assert conf["CONFIG_UART_INTERRUPT_DRIVEN"] == "y" and conf["CONFIG_RING_BUFFER"] == "y"
        assert conf["CONFIG_PICOLIBC"] == "y"
        assert conf["CONFIG_MAIN_STACK_SIZE"] == str(zephyr_config.DEFAULT_MAIN_STACK_SIZE)
        assert conf.get("CONFIG_FPU") == ("y" if board.fpu else None), board.name
        if project_type == "host_driven":
            assert conf["CONFIG_UART_CONSOLE"] == "n" and conf["CONFIG_CONSOLE"] == "n"
        else:
            assert conf["CONFIG_PRINTK"] == "y" and conf["CONFIG_UART_CONSOLE"] == "y"
            # Zephyr's reboot stops QEMU (-no-reboot) on Arm and x86, except on lm3s6965evb
            # (qemu_cortex_m3), where it jumps back to the reset handler.
            qemu_resets = board.is_emulated and board.cpu != "riscv32" and board.name != "qemu_cortex_m3"
            assert conf.get("CONFIG_REBOOT") == ("y" if qemu_resets else None), board.name

        cmake = (project / "mtp_project.cmake").read_text()
        assert f'set(MTP_ZEPHYR_BOARD "{board.zephyr_board}")' in cmake
        assert f'set(MTP_PROJECT_TYPE "{project_type}")' in cmake
        cmakelists = (project / "CMakeLists.txt").read_text()
        assert "find_package(Zephyr REQUIRED" in cmakelists
        # Our sources go into Zephyr's app library: a library made after find_package(Zephyr)
        # is left out of the link (found building against Zephyr 3.7.1).
        assert "target_sources(app PRIVATE ${MTP_MODEL_SOURCES} ${MTP_RUNTIME_SOURCES} ${MTP_APP_SOURCES})" in cmakelists
        assert "zephyr_library" not in cmakelists

        recorded = SERVER.project_gen.read_project_yaml(project)
        assert recorded["board"] == board.name and recorded["project_type"] == project_type


@pytest.mark.parametrize("given, expected", [
    ("mps2/an385", "zephyr_mps2_an385"),
    ("mps2_an385", "zephyr_mps2_an385"),
    ("nrf5340dk/nrf5340/cpuapp", "nrf5340dk"),
    ("nrf5340dk_nrf5340_cpuapp", "nrf5340dk"),
    ("nrf5340dk", "nrf5340dk"),
    ("nrf52840dk/nrf52840", "nrf52840dk"),
    ("mps2_an521", "mps2_an521"),
    ("qemu_cortex_m3", "qemu_cortex_m3"),
])
def test_board_names_with_qualifiers_and_legacy_spellings(given, expected):
    board = SERVER.resolve_board(given)
    assert board.name == expected and board.platform == "zephyr"


def test_unknown_board_names_the_choices():
    with pytest.raises(server.ServerError, match=r"unknown Zephyr board 'nucleo_nonexistent'; known boards: .*mps2/an385.*nrf5340dk/nrf5340/cpuapp"):
        SERVER.resolve_board("nucleo_nonexistent")
    with pytest.raises(server.ServerError, match="unknown Zephyr board 'host'"):
        SERVER.resolve_board("host")  # another platform's board


def test_catalogue_entries_are_complete():
    for board in ZEPHYR_BOARDS:
        assert board.zephyr_board, board.name
        if board.is_emulated:
            assert board.emulator["kind"] == "qemu" and board.emulator["machine"], board.name
        else:
            assert board.extra.get("flash_runner"), board.name
            assert board.usb_vid and board.usb_pid, board.name
    legacy = {"qemu_x86", "qemu_cortex_m3", "qemu_riscv32", "mps2_an521", "nucleo_f746zg", "nucleo_l4r5zi",
              "stm32f746g_disco", "nrf5340dk", "mimxrt1050_evk", "b_u585i_iot02a", "nrf52840dk"}
    assert legacy <= {b.name for b in ZEPHYR_BOARDS}


def test_options_arrive_as_strings_and_are_converted(hello_mlf, tmp_path):
    """tvmc sends every option as a string; the framework converts them to the declared types."""
    extra = tmp_path / "extra.tar"
    extra_src = tmp_path / "extra_src" / "src"
    extra_src.mkdir(parents=True)
    (extra_src / "standalone_inputs.c").write_text("/* inputs */\n")
    with tarfile.open(extra, "w") as tar:
        tar.add(extra_src, arcname="src")
    project = generate(hello_mlf, tmp_path / "p", board="qemu_cortex_m3", project_type="aot_standalone_demo",
                       config_main_stack_size="0x2000", workspace_size_bytes="4096", warning_as_error="true",
                       compile_definitions="MTP_STANDALONE_RUNS=10,DEBUG_LEVEL=2 FAST", extra_files_tar=str(extra),
                       verbose="false")
    assert prj_conf(project)["CONFIG_MAIN_STACK_SIZE"] == "8192"
    cmake = (project / "mtp_project.cmake").read_text()
    assert "set(MTP_WARNING_AS_ERROR ON)" in cmake
    assert ('set(MTP_COMPILE_DEFINITIONS "MTP_RX_RING_BYTES=1024" "MTP_STANDALONE_RUNS=10" '
            '"DEBUG_LEVEL=2" "FAST")') in cmake  # no MTP_EXIT_WHEN_DONE: reboot is a jump on qemu_cortex_m3
    definitions = zephyr_config.compile_definitions(SERVER.resolve_board("mps2/an385"), "aot_standalone_demo", None)
    assert definitions == ["MTP_RX_RING_BYTES=1024", "MTP_EXIT_WHEN_DONE=1"]
    assert (project / "src" / "standalone_inputs.c").read_text() == "/* inputs */\n"
    assert "(4096 B)" in (project / "prj.conf").read_text()  # the reserved arena, as given


def test_bad_option_values_are_refused_with_the_reason(hello_mlf, tmp_path):
    model = SERVER.project_gen.read_mlf(hello_mlf)
    with pytest.raises(server.ServerError, match=r"workspace_size_bytes=16 is smaller than the arena"):
        generate(hello_mlf, tmp_path / "a", board="qemu_cortex_m3", workspace_size_bytes="16")
    assert model.workspace_size_bytes > 16
    with pytest.raises(server.ServerError, match=r"needs 1,000,\d+ B of RAM .* board qemu_cortex_m3 has 65,536 B"):
        generate(hello_mlf, tmp_path / "b", board="qemu_cortex_m3", workspace_size_bytes="1000000")
    with pytest.raises(server.ServerError, match="config_main_stack_size=100 is too small"):
        generate(hello_mlf, tmp_path / "c", board="qemu_cortex_m3", config_main_stack_size="100")
    with pytest.raises(server.ServerError, match="cmsis_path .* is not a directory"):
        generate(hello_mlf, tmp_path / "d", board="qemu_cortex_m3", cmsis_path=str(tmp_path / "nowhere"))
    with pytest.raises(server.JSONRPCError, match="option 'project_type' is 'standalone'; choose one of: host_driven, aot_standalone_demo"):
        generate(hello_mlf, tmp_path / "e", board="qemu_cortex_m3", project_type="standalone")
    with pytest.raises(server.JSONRPCError, match="option 'config_main_stack_size': want an integer"):
        generate(hello_mlf, tmp_path / "f", board="qemu_cortex_m3", config_main_stack_size="big")
    with pytest.raises(server.JSONRPCError, match="requires option 'board'"):
        generate(hello_mlf, tmp_path / "g")
    for name in "abcdefg":
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir()), name


def test_cmsis_path_is_recorded(hello_mlf, tmp_path):
    cmsis = tmp_path / "CMSIS-NN"
    (cmsis / "Include").mkdir(parents=True)
    project = generate(hello_mlf, tmp_path / "p", board="nucleo_f746zg", cmsis_path=str(cmsis))
    assert f'set(MTP_CMSIS_PATH "{cmsis.resolve()}")' in (project / "mtp_project.cmake").read_text()


@pytest.mark.slow
def test_tvmc_micro_create_with_legacy_command_line(hello_mlf, tmp_path):
    """The legacy command line: tvmc micro create ... zephyr --project-option project_type=... board=..."""
    project = tmp_path / "project"
    result = subprocess.run(
        ["tvmc", "micro", "create", str(project), str(hello_mlf), "zephyr", "--project-option",
         "project_type=host_driven", "board=qemu_x86"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert result.returncode == 0, result.stdout
    assert SERVER.project_gen.read_project_yaml(project)["board"] == "qemu_x86"
    assert prj_conf(project)["CONFIG_FPU"] == "y"
    with client.instantiate_from_dir(project) as api:
        info = api.server_info_query("0.27.0")
        with pytest.raises(client.ServerError, match="is a generated project; generate new projects from the zephyr template"):
            api.generate_project(hello_mlf, None, tmp_path / "again", {"board": "qemu_x86"})
    assert info["platform_name"] == "zephyr" and info["is_template"] is False
    names = {o["name"] for o in info["project_options"]}
    assert {"board", "project_type", "zephyr_base", "west_cmd", "serial_number", "config_main_stack_size",
            "workspace_size_bytes", "gdbserver_port", "verbose", "warning_as_error", "compile_definitions",
            "extra_files_tar", "cmsis_path"} <= names


# ---- west command lines --------------------------------------------------------------------------


def test_build_command_line():
    project = pathlib.Path("/p/proj")
    assert zephyr_west.build_command(["west"], "mps2/an385", project, project / "build") == [
        "west", "build", "-b", "mps2/an385", "-d", "/p/proj/build", "-p", "auto", "/p/proj"]
    assert zephyr_west.build_command(["python3", "-m", "west"], "qemu_x86", project, project / "build", verbose=True) == [
        "python3", "-m", "west", "-v", "build", "-b", "qemu_x86", "-d", "/p/proj/build", "-p", "auto", "/p/proj",
        "--build-opt=-v"]


def test_flash_command_lines():
    build = pathlib.Path("/p/proj/build")
    assert zephyr_west.flash_command(["west"], build, "nrfjprog") == ["west", "flash", "-d", "/p/proj/build", "-r", "nrfjprog"]
    assert zephyr_west.flash_command(["west"], build, "nrfjprog", "1050012345") == [
        "west", "flash", "-d", "/p/proj/build", "-r", "nrfjprog", "--dev-id", "1050012345"]
    assert zephyr_west.flash_command(["west"], build, "openocd", "066DFF535") == [
        "west", "flash", "-d", "/p/proj/build", "-r", "openocd", "--cmd-pre-init", "adapter serial 066DFF535"]
    assert zephyr_west.flash_command(["west"], build, "jlink", "683") == [
        "west", "flash", "-d", "/p/proj/build", "-r", "jlink", "--dev-id", "683"]


def _fake_zephyr_tree(root, version=(3, 7, 0), workspace=True):
    """A directory with just a Zephyr VERSION file (in a folder marked as a west workspace, as
    `west init` leaves it): enough for the checks, never built against."""
    root.mkdir(parents=True, exist_ok=True)
    if workspace:
        (root.parent / ".west").mkdir(exist_ok=True)
    (root / "VERSION").write_text(textwrap.dedent(f"""\
        VERSION_MAJOR = {version[0]}
        VERSION_MINOR = {version[1]}
        PATCHLEVEL = {version[2]}
        VERSION_TWEAK = 0
        EXTRAVERSION =
        """))
    return root


def _recording_west(bin_dir, record):
    """TEST DOUBLE: a `west` that records its argv, cwd and ZEPHYR_BASE and exits 0. There is no Zephyr
    tree or toolchain in CI, so this stands in for west ONLY to check the exact command lines the
    real server runs; everything else in those tests (server, framework, checks) is real."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    west = bin_dir / "west"
    west.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""\
        import json, os, sys
        with open({str(record)!r}, "a") as f:
            f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd(),
                                 "zephyr_base": os.environ.get("ZEPHYR_BASE")}}) + "\\n")
        """))
    west.chmod(west.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return west


@pytest.mark.slow
def test_build_and_flash_run_west(hello_mlf, tmp_path, monkeypatch):
    """The real server's build and flash run exactly these west command lines (argv recorded by a
    test-double west on PATH: no Zephyr tree or toolchain exists in CI)."""
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("cmake") is None or shutil.which("ninja") is None:
        pytest.skip("needs arm-none-eabi-gcc, cmake and ninja (apt-get install gcc-arm-none-eabi cmake ninja-build)")
    record = tmp_path / "west_calls.jsonl"
    west = _recording_west(tmp_path / "bin", record)
    tree = _fake_zephyr_tree(tmp_path / "zephyrproject" / "zephyr")
    monkeypatch.setenv("PATH", f"{west.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ZEPHYR_TOOLCHAIN_VARIANT", "cross-compile")
    monkeypatch.setenv("CROSS_COMPILE", str(pathlib.Path(shutil.which("arm-none-eabi-gcc")).parent / "arm-none-eabi-"))
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)

    project = generate(hello_mlf, tmp_path / "nucleo", board="nucleo_f746zg").resolve()
    with client.instantiate_from_dir(project) as api:
        api.build({"zephyr_base": str(tree)})
        # An image must exist before flashing; this placeholder is never flashed (west is the recorder).
        (project / "build" / "zephyr").mkdir(parents=True)
        (project / "build" / "zephyr" / "zephyr.elf").write_bytes(b"")
        api.flash({"zephyr_base": str(tree), "serial_number": "066DFF535"})
        api.flash({"zephyr_base": str(tree), "verbose": "true"})
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    build_dir = str(project / "build")
    assert [c["argv"] for c in calls] == [
        ["build", "-b", "nucleo_f746zg", "-d", build_dir, "-p", "auto", str(project)],
        ["flash", "-d", build_dir, "-r", "openocd", "--cmd-pre-init", "adapter serial 066DFF535"],
        ["flash", "-d", build_dir, "-r", "openocd"],
    ]
    assert all(c["cwd"] == str(project) and c["zephyr_base"] == str(tree) for c in calls)

    # A QEMU board: build with its Zephyr name, with the zephyr_base recorded at generation;
    # flash runs nothing (QEMU loads the image).
    project = generate(hello_mlf, tmp_path / "mps2", board="mps2_an385", zephyr_base=str(tree)).resolve()
    with client.instantiate_from_dir(project) as api:
        api.build({"west_cmd": str(west), "verbose": "1"})
        (project / "build" / "zephyr").mkdir(parents=True)
        (project / "build" / "zephyr" / "zephyr.elf").write_bytes(b"")
        api.flash({"zephyr_base": str(tree)})
    calls = [json.loads(line) for line in record.read_text().splitlines()][3:]
    assert [c["argv"] for c in calls] == [
        ["-v", "build", "-b", "mps2/an385", "-d", str(project / "build"), "-p", "auto", str(project), "--build-opt=-v"]]
    assert calls[0]["zephyr_base"] == str(tree)


# ---- missing tools and trees -----------------------------------------------------------------------


def test_missing_west_tree_version_and_toolchain_errors(tmp_path):
    tree = _fake_zephyr_tree(tmp_path / "workspace" / "zephyr")
    project_dir = tmp_path / "project"  # outside the workspace: west finds it through ZEPHYR_BASE
    project_dir.mkdir()
    gcc_dir = pathlib.Path(shutil.which("gcc") or "/usr/bin/gcc").parent
    base_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home")}  # no Zephyr SDK under this HOME
    cross = dict(base_env, ZEPHYR_TOOLCHAIN_VARIANT="cross-compile", CROSS_COMPILE=str(gcc_dir) + os.sep)
    ok = {"west_cmd": sys.executable, "zephyr_base": str(tree)}  # any existing program stands in for west here

    def check(options, env, need_toolchain=True):
        return zephyr_west.check_environment(options, need_toolchain=need_toolchain, cwd=project_dir, environ=env)

    if shutil.which("cmake") and shutil.which("ninja"):
        result = check(ok, cross)
        assert result.version == (3, 7, 0) and result.env["ZEPHYR_BASE"] == str(tree)
    with pytest.raises(server.ServerError, match=r"west command `no-such-west` not found: install west \(pip install west"):
        check(dict(ok, west_cmd="no-such-west"), cross)
    with pytest.raises(server.ServerError, match="no Zephyr tree: set ZEPHYR_BASE"):
        check(dict(ok, zephyr_base=None), cross)
    with pytest.raises(server.ServerError, match=r"is not a Zephyr tree \(it has no VERSION file\)"):
        check(dict(ok, zephyr_base=str(project_dir)), cross)
    for version in ((3, 6, 0), (2, 7, 5), (5, 0, 0)):
        old = _fake_zephyr_tree(tmp_path / f"z{version}" / "zephyr", version)
        with pytest.raises(server.ServerError, match=rf"Zephyr {'.'.join(map(str, version))} .* is not supported: use Zephyr 3.7 LTS and 4.x"):
            check(dict(ok, zephyr_base=str(old)), cross, need_toolchain=False)
    assert check(dict(ok, zephyr_base=str(_fake_zephyr_tree(tmp_path / "z4" / "zephyr", (4, 2, 0)))), cross, False).version.major == 4
    with pytest.raises(server.ServerError, match="west build needs `cmake`.*apt-get install cmake"):
        check(ok, dict(cross, PATH=str(tmp_path / "empty")))
    # A Zephyr tree outside any west workspace: west would have no build command.
    bare = _fake_zephyr_tree(tmp_path / "bare" / "zephyr", workspace=False)
    with pytest.raises(server.ServerError, match=r"is not inside a west workspace, so west has no build command: "
                                                 r"run `west init -l .*bare/zephyr`"):
        check(dict(ok, zephyr_base=str(bare)), cross, need_toolchain=False)
    assert zephyr_west.find_west_workspace(bare, tree) == tree.parent
    assert zephyr_west.find_west_workspace(tree / "app", bare) == tree.parent  # a project inside the workspace

    toolchain = zephyr_west.check_toolchain
    with pytest.raises(server.ServerError, match="no Zephyr toolchain found: install the Zephyr SDK"):
        toolchain(base_env)
    with pytest.raises(server.ServerError, match="needs CROSS_COMPILE"):
        toolchain(dict(base_env, ZEPHYR_TOOLCHAIN_VARIANT="cross-compile"))
    with pytest.raises(server.ServerError, match=r"/opt/none/arm-none-eabi-gcc not found"):
        toolchain(dict(base_env, ZEPHYR_TOOLCHAIN_VARIANT="cross-compile", CROSS_COMPILE="/opt/none/arm-none-eabi-"))
    with pytest.raises(server.ServerError, match="needs GNUARMEMB_TOOLCHAIN_PATH"):
        toolchain(dict(base_env, ZEPHYR_TOOLCHAIN_VARIANT="gnuarmemb"))
    sdk = tmp_path / "home" / "zephyr-sdk-0.16.8"
    sdk.mkdir(parents=True)
    (sdk / "sdk_version").write_text("0.16.8\n")
    assert toolchain(base_env) == f"Zephyr SDK at {sdk}"
    assert toolchain(dict(base_env, ZEPHYR_SDK_INSTALL_DIR=str(sdk), HOME="/nonexistent")) == f"Zephyr SDK at {sdk}"
    assert toolchain(cross) == f"cross compiler {gcc_dir}{os.sep}gcc"


def test_missing_tree_error_reaches_the_client(hello_mlf, tmp_path, monkeypatch):
    """Over the wire, a build without a Zephyr tree fails before running anything, in one line."""
    monkeypatch.delenv("ZEPHYR_BASE", raising=False)
    project = generate(hello_mlf, tmp_path / "p", board="qemu_cortex_m3")
    with client.instantiate_from_dir(project) as api:
        with pytest.raises(client.ServerError) as err:
            api.build({"west_cmd": sys.executable})
        assert err.value.message.startswith("no Zephyr tree: set ZEPHYR_BASE (or the zephyr_base option)")
        assert "\n" not in err.value.message
        with pytest.raises(client.ServerError, match="build/zephyr/zephyr.elf does not exist; build the project first"):
            api.open_transport({})
    assert not (project / "build").exists()


def test_template_refuses_build():
    with client.instantiate_from_dir(TEMPLATE_DIR) as api:
        assert api.server_info_query("0.27.0")["is_template"] is True
        with pytest.raises(client.ServerError, match="build needs a generated project"):
            api.build({})


def test_version_file_parsing():
    assert zephyr_west.parse_version_file("VERSION_MAJOR = 4\nVERSION_MINOR = 1\nPATCHLEVEL = 99\n") == (4, 1, 99)
    with pytest.raises(server.ServerError, match="lacks VERSION_MINOR"):
        zephyr_west.parse_version_file("VERSION_MAJOR = 4\n")


# ---- device helpers --------------------------------------------------------------------------------

_DTS = """/dts-v1/;

/ {
	#address-cells = < 0x1 >;
	chosen {
		zephyr,console = &uart0;
		zephyr,shell-uart = &uart0;
		zephyr,sram = &sram0;
	};
	soc {
		uart1: uart@40001000 {
			compatible = "nordic,nrf-uarte";
			current-speed = < 0x1c200 >;
		};
		uart0: arduino_serial: uart@40002000 {
			compatible = "nordic,nrf-uarte";
			reg = < 0x40002000 0x1000 >;
			status = "okay";
			current-speed = < 1000000 >;
			pinctrl-names = "default", "sleep";
			child@0 {
				current-speed = < 9600 >;
			};
		};
	};
};
"""


def test_console_baud_rate_from_devicetree():
    assert zephyr_device.console_baud_rate(_DTS) == 1000000
    assert zephyr_device.console_baud_rate(_DTS.replace("= &uart0;\n\t\tzephyr,shell", "= &uart1;\n\t\tzephyr,shell")) == 115200
    no_speed = _DTS.replace("current-speed = < 1000000 >;", "")
    assert zephyr_device.console_baud_rate(no_speed) == zephyr_device.DEFAULT_BAUD_RATE
    with pytest.raises(server.ServerError, match="chooses no zephyr,console"):
        zephyr_device.console_baud_rate(_DTS.replace("zephyr,console", "zephyr,other"))
    with pytest.raises(server.ServerError, match="no node labelled 'uart9'"):
        zephyr_device.console_baud_rate(_DTS.replace("= &uart0;\n\t\tzephyr,shell", "= &uart9;\n\t\tzephyr,shell"))


def _port(device, vid=None, pid=None, serial_number=None, location=None):
    from serial.tools.list_ports_common import ListPortInfo

    port = ListPortInfo(device, skip_link_detection=True)
    port.vid, port.pid, port.serial_number, port.location = vid, pid, serial_number, location
    return port


def test_serial_port_by_serial_number_or_usb_id():
    nucleo = boards.get_board("nucleo_f746zg", "zephyr")
    nrf = boards.get_board("nrf5340dk", "zephyr")
    ports = [
        _port("/dev/ttyS0"),
        _port("/dev/ttyACM0", 0x0483, 0x374B, "066DFF", "1-1:1.2"),
        _port("/dev/ttyACM3", 0x1366, 0x1055, "1050111", "1-2:1.4"),
        _port("/dev/ttyACM2", 0x1366, 0x1055, "1050111", "1-2:1.2"),
        _port("/dev/ttyACM1", 0x1366, 0x1055, "1050111", "1-2:1.0"),
    ]
    assert zephyr_device.find_serial_port(nucleo, None, ports) == "/dev/ttyACM0"
    assert nrf.extra["serial_port_index"] == 2
    assert zephyr_device.find_serial_port(nrf, None, ports) == "/dev/ttyACM3"  # VCOM2: the third interface
    assert zephyr_device.find_serial_port(nrf, "1050111", ports) == "/dev/ttyACM3"
    with pytest.raises(server.ServerError, match=r"console is its probe's port #2, but the probe shows only 2"):
        zephyr_device.find_serial_port(nrf, None, [p for p in ports if p.device != "/dev/ttyACM3"])
    two = ports + [_port("/dev/ttyACM3", 0x0483, 0x374B, "0670AA", "1-3:1.2")]
    with pytest.raises(server.ServerError, match="2 boards with USB id 0483:374b are connected .*serial_number"):
        zephyr_device.find_serial_port(nucleo, None, two)
    assert zephyr_device.find_serial_port(nucleo, "0670AA", two) == "/dev/ttyACM3"
    with pytest.raises(server.ServerError, match="no serial port with serial number NOPE for board nucleo_f746zg"):
        zephyr_device.find_serial_port(nucleo, "NOPE", ports)
    with pytest.raises(server.ServerError, match="no serial port with USB id 0483:374b .*ports seen: /dev/ttyS0"):
        zephyr_device.find_serial_port(nucleo, None, ports[:1])


def test_qemu_command_lines(tmp_path):
    build = tmp_path / "build"
    (build / "zephyr").mkdir(parents=True)
    m3 = zephyr_device.ZephyrQemu(boards.get_board("qemu_cortex_m3", "zephyr"), build)
    assert m3.argv(4321) == [
        "qemu-system-arm", "-M", "lm3s6965evb", "-display", "none", "-monitor", "none", "-no-reboot",
        "-serial", "tcp:127.0.0.1:4321,server=on,wait=on", "-kernel", str(build / "zephyr" / "zephyr.elf")]
    an385 = zephyr_device.ZephyrQemu(boards.get_board("mps2/an385", "zephyr"), build, gdbserver_port=1234)
    assert an385.argv(9)[:3] == ["qemu-system-arm", "-M", "mps2-an385"]
    assert an385.argv(9)[-3:] == ["-gdb", "tcp:127.0.0.1:1234", "-S"]
    riscv = zephyr_device.ZephyrQemu(boards.get_board("qemu_riscv32", "zephyr"), build).argv(9)
    assert riscv[:3] == ["qemu-system-riscv32", "-M", "virt"] and riscv[riscv.index("-bios") + 1] == "none"
    x86_board = boards.get_board("qemu_x86", "zephyr")
    with pytest.raises(server.ServerError, match="gives no CONFIG_SRAM_SIZE"):
        zephyr_device.ZephyrQemu(x86_board, build)
    (build / "zephyr" / ".config").write_text("CONFIG_FOO=y\nCONFIG_SRAM_SIZE=4096\n")
    x86 = zephyr_device.ZephyrQemu(x86_board, build).argv(9)
    assert x86[0] == "qemu-system-i386" and x86[x86.index("-m") + 1] == "4"
    assert "-serial" in x86 and x86[x86.index("-serial") + 1].startswith("tcp:127.0.0.1:9,")
    with pytest.raises(server.ServerError, match="not emulated by QEMU"):
        zephyr_device.ZephyrQemu(boards.get_board("nrf5340dk", "zephyr"), build)


@pytest.mark.slow
def test_qemu_transport_serves_host_driven_inference(hello_mlf, tmp_path):
    """The server's QEMU path end to end on real QEMU: open_transport starts qemu-system-arm for
    qemu_cortex_m3 (machine lm3s6965evb), a Session runs an inference over it, close_transport stops
    QEMU. CI has no Zephyr tree, so the image is the cortex_m template's host-driven firmware for
    lm3s6965evb (same machine, same device runtime and RPC), placed where west would put zephyr.elf."""
    if shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("needs qemu-system-arm and gcc-arm-none-eabi")
    from project_api.compiler.native import run_native
    from project_api.rpc.transport import ProjectAPITransport
    from project_api.session import Session

    firmware_project = tmp_path / "cortex_m"
    with client.instantiate_from_template("cortex_m") as api:
        api.generate_project(hello_mlf, None, firmware_project, {"board": "lm3s6965evb", "project_type": "host_driven"})
    with client.instantiate_from_dir(firmware_project) as api:
        api.build({})
    project = generate(hello_mlf, tmp_path / "zephyr", board="qemu_cortex_m3")
    image = project.resolve() / "build" / "zephyr" / "zephyr.elf"
    image.parent.mkdir(parents=True)
    shutil.copy(firmware_project / "build" / "firmware.elf", image)

    x = np.array([[1.25]], dtype=np.float32)
    expected = run_native(hello_mlf, [x])[0]
    with client.instantiate_from_dir(project) as api:
        api.flash({})  # nothing to program on a QEMU board
        with Session(ProjectAPITransport(api, {})) as session:
            qemu_pids = _qemu_pids(image)
            assert qemu_pids, "open_transport did not start QEMU"
            session.set_input(0, x)
            session.run()
            np.testing.assert_array_equal(session.get_output(0), expected)
        assert not _qemu_pids(image), "close_transport left QEMU running"


def _qemu_pids(image):
    """QEMU processes running this image (other tests may run QEMU at the same time)."""
    pids = set()
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # the process exited meanwhile
            continue
        if argv[0].endswith(b"qemu-system-arm") and str(image).encode() in argv:
            pids.add(int(cmdline.parent.name))
    return pids


# ---- why a build failed ---------------------------------------------------------------------------

# Output of real failed builds against Zephyr 3.7.1 (a workspace without the cmsis and picolibc
# modules; the template's earlier CMakeLists.txt whose library was left out of the link).
_NO_MODULES_OUTPUT = """\
[0/1] Re-running CMake...
warning: The choice symbol PICOLIBC (defined at lib/libc/Kconfig:81) was selected (set =y), but
MINIMAL_LIBC (defined at lib/libc/Kconfig:67) ended up as the choice selection. See
http://docs.zephyrproject.org/latest/kconfig.html#CONFIG_PICOLIBC and/or look up PICOLIBC in the

warning: HAS_CMSIS_CORE (defined at modules/cmsis/Kconfig:7) has direct dependencies 0 with value n, but is currently being y-selected by the following symbols:
 - CPU_CORTEX_M (defined at arch/arm/core/Kconfig:6), with value y, direct dependencies ARM (value: y), and select condition ARM (value: y)

error: Aborting due to Kconfig warnings
CMake Error at /z/zephyr/cmake/modules/kconfig.cmake:389 (message):
"""
_UNLINKED_OUTPUT = """\
[184/1056] Building C object modules/picolibc/CMakeFiles/c.dir/newlib/libc/posix/regerror.c.obj
[350/1056] Building C object modules/picolibc/CMakeFiles/c.dir/newlib/libc/string/strerror.c.obj
[1051/1056] Linking C executable zephyr/zephyr_pre0.elf
FAILED: zephyr/zephyr_pre0.elf zephyr/zephyr_pre0.map
/usr/bin/ld.bfd: app/libapp.a(main.c.obj): in function `main':
/p/src/main.c:124: undefined reference to `mtp_rpc_server_run'
collect2: error: ld returned 1 exit status
ninja: build stopped: subcommand failed.
"""


def test_build_failures_are_explained_in_one_line():
    message = zephyr_west.explain_failure("west build", 1, _NO_MODULES_OUTPUT)
    assert message.startswith("west build failed: Zephyr's CMSIS module is not in the workspace")
    assert "`west update picolibc`" in message and "\n" not in message
    message = zephyr_west.explain_failure("west build", 1, _UNLINKED_OUTPUT)
    assert message == ("west build failed (exit status 1): /p/src/main.c:124: undefined reference to "
                       "`mtp_rpc_server_run' | collect2: error: ld returned 1 exit status")  # no ninja progress lines
    message = zephyr_west.explain_failure("west build", 1, "ld: region `FLASH' overflowed by 12345 bytes\n")
    assert message.startswith("the firmware does not fit the board: FLASH overflowed by 12,345 B")


# ---- against a real Zephyr tree --------------------------------------------------------------------


@pytest.fixture
def zephyr_tree(monkeypatch):
    """$ZEPHYR_BASE (a Zephyr tree in a west workspace, docs/zephyr.md), else skip. Without a
    configured toolchain, Debian's arm-none-eabi-gcc is used (ZEPHYR_TOOLCHAIN_VARIANT=cross-compile)."""
    base = os.environ.get("ZEPHYR_BASE")
    if not base:
        pytest.skip("$ZEPHYR_BASE is unset: no Zephyr tree to build against (see docs/zephyr.md)")
    if shutil.which("west") is None:
        pytest.skip("west is not installed (pip install west)")
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("needs qemu-system-arm")
    try:
        zephyr_west.check_toolchain(os.environ)
    except server.ServerError:
        gcc = shutil.which("arm-none-eabi-gcc")
        if gcc is None:
            raise
        monkeypatch.setenv("ZEPHYR_TOOLCHAIN_VARIANT", "cross-compile")
        monkeypatch.setenv("CROSS_COMPILE", gcc[:-len("gcc")])
    return pathlib.Path(base)


@pytest.mark.slow
def test_zephyr_qemu_host_driven_inference(hello_mlf, tmp_path, zephyr_tree):
    """Build the host_driven project for qemu_cortex_m3 with west against $ZEPHYR_BASE, run it on
    QEMU and compare inferences with the same MLF run natively."""
    from project_api.compiler.native import run_native
    from project_api.rpc.transport import ProjectAPITransport
    from project_api.session import Session

    project = generate(hello_mlf, tmp_path / "project", board="qemu_cortex_m3", project_type="host_driven",
                       warning_as_error="true")
    inputs = [np.array([[x]], dtype=np.float32) for x in (0.0, 1.5, 4.75)]
    with client.instantiate_from_dir(project) as api:
        api.build({})
        api.flash({})
        with Session(ProjectAPITransport(api, {})) as session:
            image = project.resolve() / "build" / "zephyr" / "zephyr.elf"
            assert _qemu_pids(image), "open_transport did not start QEMU"
            for x in inputs:
                session.set_input(0, x)
                session.run()
                np.testing.assert_array_equal(session.get_output(0), run_native(hello_mlf, [x])[0])
        assert not _qemu_pids(image), "close_transport left QEMU running"


def _read_console_until_end(api, timeout_sec=30.0):
    """The standalone image's console text, through the server's transport, up to its `end` line."""
    text, deadline = b"", time.monotonic() + timeout_sec
    while not text.endswith(b"end\n") and b"end\r\n" not in text:
        if time.monotonic() > deadline:
            raise AssertionError(f"no `end` line within {timeout_sec} s; console so far: {text!r}")
        text += api.read_transport(4096, 5.0)["data"]
    return text.decode("ascii", "replace").replace("\r\n", "\n")


@pytest.mark.slow
def test_zephyr_mps2_an385_standalone_demo(hello_mlf, tmp_path, zephyr_tree):
    """The aot_standalone_demo project for mps2/an385, built against $ZEPHYR_BASE: on QEMU it prints
    the model's output for zero inputs (equal to the native run), its timing and stack use, then
    resets, which stops QEMU."""
    from project_api.compiler.native import run_native

    project = generate(hello_mlf, tmp_path / "project", board="mps2/an385", project_type="aot_standalone_demo",
                       compile_definitions="MTP_STANDALONE_RUNS=10", warning_as_error="true")
    with client.instantiate_from_dir(project) as api:
        api.build({})
        api.open_transport({})
        try:
            console = _read_console_until_end(api)
            image = project.resolve() / "build" / "zephyr" / "zephyr.elf"
            for _ in range(50):  # the image resets after `end`; QEMU (-no-reboot) exits by itself
                if not _qemu_pids(image):
                    break
                time.sleep(0.1)
            assert not _qemu_pids(image), "QEMU still runs after the image reset"
        finally:
            api.close_transport()
    records = dict(line.split(" ", 1) for line in console.splitlines() if " " in line and not line.startswith("***"))
    expected = run_native(hello_mlf, [np.zeros((1, 1), np.float32)])[0]
    assert records["mtp-standalone"] == "default"
    assert records["output"] == "0 " + expected.tobytes().hex()
    assert records["status"] == "0"
    assert 0 < int(records["stack"], 16) < zephyr_config.DEFAULT_MAIN_STACK_SIZE
    assert int(records["tick_hz"], 16) == 25_000_000  # mps2/an385's SysTick clock
    assert [line.split()[1] for line in console.splitlines() if line.startswith("ticks ")] == ["1", "a"]
