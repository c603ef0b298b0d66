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
import shutil
import subprocess
import sys

from project_api import boards, project_gen, server
from project_api.rpc.transport import SerialTransport

PROJECT_DIR = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(PROJECT_DIR))  # the helper modules beside this script, also when imported

import zephyr_config  # noqa: E402
import zephyr_device  # noqa: E402
import zephyr_west  # noqa: E402

IS_TEMPLATE = project_gen.is_template(PROJECT_DIR)
PLATFORM = "zephyr"
BUILD_DIR = "build"
# Zephyr boots in well under a second (QEMU included); replies of a few KiB take ~0.4 s at 115200 baud.
TIMEOUTS = server.TransportTimeouts(
    session_start_retry_timeout_sec=2.0, session_start_timeout_sec=10.0, session_established_timeout_sec=10.0
)

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


def _run(argv, env, verbose: bool, what: str) -> None:
    """Run a west command; its output goes to our stderr when verbose or when it fails."""
    try:
        result = subprocess.run(argv, cwd=PROJECT_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
    except OSError as err:
        raise server.ServerError(f"cannot run {argv[0]}: {err}") from err
    if verbose or result.returncode != 0:
        sys.stderr.write(result.stdout)
    if result.returncode != 0:
        raise server.ServerError(zephyr_west.explain_failure(what, result.returncode, result.stdout))


class Handler(server.TransportHandler):
    def server_info_query(self, tvm_version):
        return project_gen.server_info(PLATFORM, PROJECT_DIR, PROJECT_OPTIONS)

    # ---- generate ---------------------------------------------------------------------------

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        if not IS_TEMPLATE:
            raise server.ServerError(f"{PROJECT_DIR} is a generated project; generate new projects from the zephyr "
                                     "template (tvmc micro create ... zephyr)")
        board = resolve_board(options["board"])
        project_type = options["project_type"]
        project_dir = pathlib.Path(project_dir)
        model = project_gen.read_mlf(model_library_format_path)
        arena = zephyr_config.workspace_size(model, options.get("workspace_size_bytes"))
        project_gen.check_model_fits(dataclasses.replace(model, workspace_size_bytes=arena), board)
        stack = zephyr_config.main_stack_size(options.get("config_main_stack_size"))
        cmsis_path = options.get("cmsis_path")
        if cmsis_path and not pathlib.Path(cmsis_path).is_dir():
            raise server.ServerError(f"cmsis_path {cmsis_path} is not a directory (a CMSIS-NN checkout)")
        options = dict(options, board=board.name)
        project_gen.generate_common(PROJECT_DIR, model_library_format_path, project_dir, options, board, model)
        try:
            self._lay_out_sources(project_dir, project_type)
            (project_dir / "prj.conf").write_text(
                zephyr_config.prj_conf(board, project_type, model, stack_size=stack, arena_bytes=arena), encoding="utf-8")
            definitions = zephyr_config.compile_definitions(board, project_type, options.get("compile_definitions"))
            (project_dir / "mtp_project.cmake").write_text(
                zephyr_config.project_cmake(board, project_type, definitions=definitions,
                                            warning_as_error=options["warning_as_error"],
                                            cmsis_path=str(pathlib.Path(cmsis_path).resolve()) if cmsis_path else None),
                encoding="utf-8")
        except BaseException:
            shutil.rmtree(project_dir, ignore_errors=True)
            raise

    @staticmethod
    def _lay_out_sources(project_dir: pathlib.Path, project_type: str) -> None:
        """Keep the chosen project type's main.c as src/main.c; drop the others'."""
        src = project_dir / "src"
        (src / project_type / "main.c").replace(src / "main.c")
        for kind in zephyr_config.PROJECT_TYPES:
            shutil.rmtree(src / kind, ignore_errors=True)

    # ---- build and flash --------------------------------------------------------------------

    def _require_project(self, method):
        if IS_TEMPLATE:
            raise server.ServerError(f"{method} needs a generated project; {PROJECT_DIR} is the zephyr template "
                                     "(run tvmc micro create first)")

    def _board(self) -> boards.Board:
        name = project_gen.read_project_yaml(PROJECT_DIR).get("board")
        if not name:
            raise server.ServerError(f"{PROJECT_DIR / project_gen.PROJECT_YAML} names no board; generate the project again")
        return resolve_board(name)

    def build(self, options):
        self._require_project("build")
        options = project_gen.options_with_defaults(PROJECT_DIR, options)
        board = self._board()
        west = zephyr_west.check_environment(options, need_toolchain=True, cwd=PROJECT_DIR)
        argv = zephyr_west.build_command(west.west, board.zephyr_board, PROJECT_DIR, PROJECT_DIR / BUILD_DIR,
                                         verbose=bool(options.get("verbose")))
        _run(argv, west.env, bool(options.get("verbose")), "west build")

    def flash(self, options):
        self._require_project("flash")
        options = project_gen.options_with_defaults(PROJECT_DIR, options)
        board = self._board()
        self._require_image()
        if zephyr_config.is_qemu(board):
            return  # QEMU loads the image when the transport opens
        runner = board.extra.get("flash_runner")
        if not runner:
            raise server.ServerError(f"board {board.name} has no flash_runner in boards/boards.yaml")
        west = zephyr_west.check_environment(options, need_toolchain=False, cwd=PROJECT_DIR)
        argv = zephyr_west.flash_command(west.west, PROJECT_DIR / BUILD_DIR, runner, options.get("serial_number"))
        _run(argv, west.env, bool(options.get("verbose")), "west flash")

    def _require_image(self) -> pathlib.Path:
        elf = PROJECT_DIR / BUILD_DIR / zephyr_device.ZEPHYR_ELF
        if not elf.is_file():
            raise server.ServerError(f"{elf} does not exist; build the project first (tvmc micro build)")
        return elf

    # ---- transport --------------------------------------------------------------------------

    def open_transport(self, options):
        self._require_project("open_transport")
        options = project_gen.options_with_defaults(PROJECT_DIR, options)
        board = self._board()
        self._require_image()
        self.close_transport()
        if zephyr_config.is_qemu(board):
            return self._open_qemu(board, options.get("gdbserver_port"))
        return self._open_serial(board, options.get("serial_number"))

    def _open_qemu(self, board, gdbserver_port):
        qemu = zephyr_device.ZephyrQemu(board, PROJECT_DIR / BUILD_DIR, gdbserver_port=gdbserver_port)
        if shutil.which(qemu.binary) is None:
            package = {"qemu-system-i386": "qemu-system-x86", "qemu-system-riscv32": "qemu-system-misc"}.get(
                qemu.binary, "qemu-system-arm")
            raise server.ServerError(f"{qemu.binary} not found: apt-get install --no-install-recommends {package}")
        return self.attach_transport(lambda: SerialTransport(qemu.serial_url, timeouts=TIMEOUTS), qemu)

    def _open_serial(self, board, serial_number):
        from serial.tools import list_ports

        dts = PROJECT_DIR / BUILD_DIR / zephyr_device.ZEPHYR_DTS
        if not dts.is_file():
            raise server.ServerError(f"{dts} does not exist; build the project first (tvmc micro build)")
        baud = zephyr_device.console_baud_rate(dts.read_text(encoding="utf-8", errors="replace"))
        port = zephyr_device.find_serial_port(board, serial_number, list_ports.comports())
        return self.attach_transport(lambda: SerialTransport(port, baud, timeouts=TIMEOUTS),
                                     user_errors=(server.TransportClosedError,))


if __name__ == "__main__":
    server.main(Handler())
