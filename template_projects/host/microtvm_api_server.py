"""Project API server of the host board: the model runs in a native program on this machine.

generate_project lays out a self-contained project (Makefile, src/, device_runtime/, model/) and
writes config.mk from the options; build runs `make` to get build/main; flash does nothing; the
transport is build/main's stdin/stdout. Used as a template (from template_projects/host) and as a
generated project's server.
"""

from project_api import boards, server, template
from project_api.options import compile_definitions
from project_api.rpc.transport import SubprocessTransport

EXECUTABLE = "build/main"
CONFIG_MK = "config.mk"


class Handler(template.TemplateHandler):
    PLATFORM = "host"
    PROJECT_OPTIONS = server.default_project_options(
        board={"default": "host", "required": (), "optional": ("generate_project",),
               "choices": boards.board_choices(PLATFORM)},
        verbose={"optional": ("build",)},
    )

    def write_build_files(self, project_dir, model, board, options):
        flags = (["-Werror"] if options["warning_as_error"] else []) + compile_definitions(options["compile_definitions"])
        (project_dir / CONFIG_MK).write_text(
            "# Written at project generation from the project options.\n"
            f"PROJECT_CFLAGS := {' '.join(flags)}\n", encoding="utf-8")

    def build(self, options):
        options = self.generated_options("build", options)
        self.require_tool("make", "build needs make and a C compiler: apt-get install make gcc")
        verbose = options.get("verbose")
        self.run_tool(template.make_argv(self.project_dir) + (["V=1"] if verbose else []), "make", verbose)

    def flash(self, options):
        # Nothing to program: the executable runs when the transport opens.
        self.require_project("flash")
        self.require_built(EXECUTABLE)

    def open_transport(self, options):
        self.require_project("open_transport")
        executable = self.require_built(EXECUTABLE)
        return self.attach_transport(
            lambda: SubprocessTransport([str(executable)], cwd=str(self.project_dir), timeouts=self.TIMEOUTS))


if __name__ == "__main__":
    server.main(Handler())
