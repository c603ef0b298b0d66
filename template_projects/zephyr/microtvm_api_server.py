"""Project API server of the Zephyr template: a Zephyr application (CMakeLists.txt with
find_package(Zephyr), a generated prj.conf) holding the model and the shared device runtime.

generate_project lays the project out (project_gen) and writes prj.conf and mtp_project.cmake;
build runs `west build -b <board>`; flash runs `west flash -r <runner>` for a real board (nothing
for a QEMU board); open_transport opens the board's serial port (found by serial number or USB
VID:PID, at the console's baud rate from the build's devicetree) or starts QEMU with the console
UART on a 127.0.0.1 TCP socket. Project types: host_driven (the RPC server) and
aot_standalone_demo (runs the model once and prints the results on the console).
Used as a template (from template_projects/zephyr) and as a generated project's server.
"""

import dataclasses
import pathlib
import sys

from project_api import boards, project_gen, server, template
from project_api.rpc.transport import SerialTransport

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # the helper modules beside this script

import zephyr_config  # noqa: E402
import zephyr_device  # noqa: E402
import zephyr_west  # noqa: E402

PLATFORM = "zephyr"
BUILD_DIR = "build"
ZEPHYR_ELF = pathlib.Path(BUILD_DIR) / zephyr_device.ZEPHYR_ELF
QEMU_PACKAGES = {"qemu-system-i386": "qemu-system-x86", "qemu-system-riscv32": "qemu-system-misc"}

PROJECT_OPTIONS = server.default_project_options(
    # No choices list: Zephyr names with qualifiers (mps2/an385) and legacy spellings are resolved
    # by boards.get_board, which names the known boards when one is not.
    board={"help": "Board, by its Zephyr name (" + ", ".join(b.zephyr_board for b in boards.all_boards(PLATFORM))
                   + "), its name in boards/boards.yaml, or a legacy spelling (mps2_an385, nrf5340dk_nrf5340_cpuapp)."},
    project_type={"choices": zephyr_config.PROJECT_TYPES},
    verbose={"optional": ("generate_project", "build", "flash")},
) + [
    server.ProjectOption(
        "zephyr_base", type="str", optional=("build", "flash"),
        help="The zephyr/ folder of a west workspace (Zephyr 3.7 LTS or 4.x); default: $ZEPHYR_BASE when building."),
    server.ProjectOption(
        "west_cmd", type="str", default="west", optional=("build", "flash"),
        help="How to run west, e.g. 'west' (default, from PATH) or 'python3 -m west'."),
    server.ProjectOption(
        "serial_number", type="str", optional=("flash", "open_transport"),
        help="Serial number of the board's probe, to pick one board when several are connected."),
    server.ProjectOption(
        "config_main_stack_size", type="int", optional=("generate_project",),
        help=f"CONFIG_MAIN_STACK_SIZE in bytes (default {zephyr_config.DEFAULT_MAIN_STACK_SIZE})."),
    server.ProjectOption(
        "workspace_size_bytes", type="int", optional=("generate_project",),
        help="RAM to reserve for the model's arena (default and minimum: the arena size in the MLF metadata)."),
    server.ProjectOption(
        "gdbserver_port", type="int", optional=("open_transport",),
        help="QEMU boards: start QEMU halted with a GDB server on 127.0.0.1:PORT."),
    server.ProjectOption(
        "cmsis_path", type="str", optional=("generate_project",),
        help="A CMSIS-NN checkout to compile with the model (for kernels that call CMSIS-NN)."),
]

def resolve_board(name: str) -> boards.Board:
    try:
        return boards.get_board(name, PLATFORM)
    except boards.UnknownBoardError:
        known = ", ".join(b.zephyr_board for b in boards.all_boards(PLATFORM))
        raise server.ServerError(f"unknown Zephyr board '{name}'; known boards: {known} "
                                 "(add others to boards/boards.yaml)") from None


class Handler(template.TemplateHandler):
    PLATFORM = PLATFORM
    # Zephyr boots in well under a second (QEMU included); replies of a few KiB take ~0.4 s at 115200 baud.
    TIMEOUTS = server.TransportTimeouts(
        session_start_retry_timeout_sec=2.0, session_start_timeout_sec=10.0, session_established_timeout_sec=10.0)
    PROJECT_OPTIONS = PROJECT_OPTIONS
    resolve_board = staticmethod(resolve_board)

    # ---- generate ---------------------------------------------------------------------------

    def check_generation_options(self, options, board):
        zephyr_config.main_stack_size(options.get("config_main_stack_size"))
        cmsis_path = options.get("cmsis_path")
        if cmsis_path and not pathlib.Path(cmsis_path).is_dir():
            raise server.ServerError(f"cmsis_path {cmsis_path} is not a directory (a CMSIS-NN checkout)")
        return options

    def check_model(self, model, board, options):
        arena = zephyr_config.workspace_size(model, options.get("workspace_size_bytes"))
        project_gen.check_model_fits(dataclasses.replace(model, workspace_size_bytes=arena), board)

    def write_build_files(self, project_dir, model, board, options):
        project_type = options["project_type"]
        # Keep the chosen project type's main.c as src/main.c; drop the others'.
        (project_dir / "src" / project_type / "main.c").replace(project_dir / "src" / "main.c")
        project_gen.remove_unbuilt(project_dir, [f"src/{kind}" for kind in zephyr_config.PROJECT_TYPES])
        (project_dir / "prj.conf").write_text(zephyr_config.prj_conf(
            board, project_type, model, stack_size=zephyr_config.main_stack_size(options.get("config_main_stack_size")),
            arena_bytes=zephyr_config.workspace_size(model, options.get("workspace_size_bytes"))), encoding="utf-8")
        cmsis_path = options.get("cmsis_path")
        (project_dir / "mtp_project.cmake").write_text(zephyr_config.project_cmake(
            board, project_type, warning_as_error=options["warning_as_error"],
            definitions=zephyr_config.compile_definitions(board, project_type, options.get("compile_definitions")),
            cmsis_path=str(pathlib.Path(cmsis_path).resolve()) if cmsis_path else None), encoding="utf-8")

    def readme_values(self, project_dir, model, board, options):
        return dict(super().readme_values(project_dir, model, board, options), zephyr_board=board.zephyr_board,
                    flash=("nothing to flash: `west build -t run` starts it on QEMU" if zephyr_config.is_qemu(board)
                           else f"`west flash -d build -r {board.extra.get('flash_runner', 'RUNNER')}`"))

    # ---- build and flash --------------------------------------------------------------------

    def build(self, options):
        options = self.generated_options("build", options)
        board = self.board()
        west = zephyr_west.check_environment(options, need_toolchain=True, cwd=self.project_dir)
        verbose = bool(options.get("verbose"))
        argv = zephyr_west.build_command(west.west, board.zephyr_board, self.project_dir, self.project_dir / BUILD_DIR,
                                         verbose=verbose)
        self.run_tool(argv, "west build", verbose, env=west.env, explain=zephyr_west.explain_failure)

    def flash(self, options):
        options = self.generated_options("flash", options)
        board = self.board()
        self.require_built(ZEPHYR_ELF)
        if zephyr_config.is_qemu(board):
            return  # QEMU loads the image when the transport opens
        runner = board.extra.get("flash_runner")
        if not runner:
            raise server.ServerError(f"board {board.name} has no flash_runner in boards/boards.yaml")
        west = zephyr_west.check_environment(options, need_toolchain=False, cwd=self.project_dir)
        argv = zephyr_west.flash_command(west.west, self.project_dir / BUILD_DIR, runner, options.get("serial_number"))
        self.run_tool(argv, "west flash", options.get("verbose"), env=west.env, explain=zephyr_west.explain_failure)

    # ---- transport --------------------------------------------------------------------------

    def open_transport(self, options):
        options = self.generated_options("open_transport", options)
        board = self.board()
        self.require_built(ZEPHYR_ELF)
        self.close_transport()
        if zephyr_config.is_qemu(board):
            qemu = zephyr_device.ZephyrQemu(board, self.project_dir / BUILD_DIR, gdbserver_port=options.get("gdbserver_port"))
            self.require_tool(qemu.binary, "apt-get install --no-install-recommends "
                              + QEMU_PACKAGES.get(qemu.binary, "qemu-system-arm"))
            return self.attach_transport(lambda: SerialTransport(qemu.serial_url, timeouts=self.TIMEOUTS), qemu)
        return self._open_serial(board, options.get("serial_number"))

    def _open_serial(self, board, serial_number):
        from serial.tools import list_ports

        dts = self.require_built(pathlib.Path(BUILD_DIR) / zephyr_device.ZEPHYR_DTS)
        baud = zephyr_device.console_baud_rate(dts.read_text(encoding="utf-8", errors="replace"))
        port = zephyr_device.find_serial_port(board, serial_number, list_ports.comports())
        return self.attach_transport(lambda: SerialTransport(port, baud, timeouts=self.TIMEOUTS),
                                     user_errors=(server.TransportClosedError,))


if __name__ == "__main__":
    server.main(Handler())
