"""Project API server of the host board: the model runs in a native program on this machine.

generate_project lays out a self-contained project (Makefile, src/, device_runtime/, model/);
build runs `make` to get build/main; flash does nothing; the transport is build/main's
stdin/stdout. Used as a template (from template_projects/host) and as a generated project's server.
"""

import os
import pathlib
import shutil
import subprocess
import sys

from project_api import boards, project_gen, server
from project_api.rpc.transport import SubprocessTransport

PROJECT_DIR = pathlib.Path(__file__).resolve().parent
IS_TEMPLATE = project_gen.is_template(PROJECT_DIR)
PLATFORM = "host"
EXECUTABLE = pathlib.Path("build") / "main"
CONFIG_MK = "config.mk"
# The device program answers at once; the defaults of the session layer are generous for a pipe.
TIMEOUTS = server.TransportTimeouts(
    session_start_retry_timeout_sec=1.0, session_start_timeout_sec=10.0, session_established_timeout_sec=10.0
)


PROJECT_OPTIONS = server.default_project_options(
    board={"default": "host", "required": (), "optional": ("generate_project",), "choices": boards.board_choices(PLATFORM)},
    verbose={"optional": ("build",)},
)


class Handler(server.TransportHandler):
    def server_info_query(self, tvm_version):
        return project_gen.server_info(PLATFORM, PROJECT_DIR, PROJECT_OPTIONS)

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        board = boards.get_board(options["board"], PLATFORM)
        options = dict(options, board=board.name)
        project_gen.generate_common(PROJECT_DIR, model_library_format_path, project_dir, options, board)
        flags = (["-Werror"] if options["warning_as_error"] else []) + project_gen.compile_definitions(
            options["compile_definitions"])
        (project_dir / CONFIG_MK).write_text(
            "# Written at project generation from the project options.\n"
            f"PROJECT_CFLAGS := {' '.join(flags)}\n", encoding="utf-8")

    def _require_project(self, method):
        if IS_TEMPLATE:
            raise server.ServerError(f"{method} needs a generated project; {PROJECT_DIR} is the host template "
                                     "(run tvmc micro create first)")

    def build(self, options):
        self._require_project("build")
        make = shutil.which("make")
        if make is None:
            raise server.ServerError("build needs `make` and a C compiler (apt-get install make gcc)")
        argv = [make, "-C", str(PROJECT_DIR), f"-j{os.cpu_count() or 1}"] + (["V=1"] if options.get("verbose") else [])
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if options.get("verbose") or result.returncode != 0:
            sys.stderr.write(result.stdout)
        if result.returncode != 0:
            raise server.ServerError(project_gen.tool_failure("make", result.returncode, result.stdout))

    def flash(self, options):
        # Nothing to program: the executable runs when the transport opens.
        self._require_project("flash")
        if not (PROJECT_DIR / EXECUTABLE).is_file():
            raise server.ServerError(f"{PROJECT_DIR / EXECUTABLE} does not exist; build the project first")

    def open_transport(self, options):
        self._require_project("open_transport")
        executable = PROJECT_DIR / EXECUTABLE
        if not executable.is_file():
            raise server.ServerError(f"{executable} does not exist; build the project first")
        return self.attach_transport(
            lambda: SubprocessTransport([str(executable)], cwd=str(PROJECT_DIR), timeouts=TIMEOUTS))


if __name__ == "__main__":
    server.main(Handler())
