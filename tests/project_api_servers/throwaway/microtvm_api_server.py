"""A template written in the test suite, as a newcomer would write one: a standalone program for
this machine, built with make and the host's C compiler, that runs the model once and prints the
records project_api.standalone decodes. It needs nothing outside this folder (boards.yaml holds
its board); tests/test_template_framework.py and the conformance suite run it."""

from project_api import project_gen, server, template

EXECUTABLE = "build/main"


class Handler(template.TemplateHandler):
    PLATFORM = "throwaway"
    PROJECT_OPTIONS = server.default_project_options(
        board={"default": "throwaway_native", "required": ()},
        project_type={"default": "standalone", "choices": ("standalone",)},
    )

    def write_build_files(self, project_dir, model, board, options):
        (project_dir / "config.mk").write_text(
            f"WERROR := {'-Werror' if options['warning_as_error'] else ''}\n", encoding="utf-8")
        project_gen.remove_unbuilt(project_dir, ["device_runtime/src"])  # no RPC server here

    def build(self, options):
        options = self.generated_options("build", options)
        self.require_tool("make", "apt-get install make gcc")
        self.run_tool(template.make_argv(self.project_dir), "make", options.get("verbose"))

    def flash(self, options):
        self.require_project("flash")
        self.require_built(EXECUTABLE)

    def open_transport(self, options):
        self.require_project("open_transport")
        raise server.ServerError(f"a standalone project has no transport: run {EXECUTABLE}")


if __name__ == "__main__":
    server.main(Handler())
