"""The template framework: what every template's ``microtvm_api_server.py`` would otherwise repeat.

A template server is a thin subclass of ``TemplateHandler``::

    class Handler(template.TemplateHandler):
        PLATFORM = "host"                       # its boards in boards/boards.yaml have this platform
        TIMEOUTS = server.TransportTimeouts(...)
        PROJECT_OPTIONS = server.default_project_options(...)

        def write_build_files(self, project_dir, model, board, options): ...   # config.mk, prj.conf ...
        def build(self, options): ...
        def flash(self, options): ...
        def open_transport(self, options): ...

The framework answers server_info_query, generates the project (the shared layout of
project_gen, then ``write_build_files``, then README.md from the template's
``project_readme.md``) inside a guard that removes a half-made project so a retry starts clean,
and gives build/flash/open_transport their checks in one line each: ``generated_options(method,
options)`` (a generated project's options: the call's merged with project.yaml), ``board()``,
``require_tool``, ``require_built``, ``run_tool`` (tool_run: a log file, one progress line, one
failure line).
"""

from __future__ import annotations

import os
import pathlib
import string
import sys
from typing import Callable, List, Mapping, Optional, Sequence

from . import boards, project_gen, tool_run
from .options import ProjectOption, merge_with_project_yaml
from .server import ServerError, ServerInfo, TransportHandler, TransportTimeouts

# In a template folder: the README of the projects it generates (string.Template: $board ..., $$ for a $).
PROJECT_README_TEMPLATE = "project_readme.md"
PROJECT_README = "README.md"
# Beside a server: boards of a template kept outside this repository (the catalogue is boards/boards.yaml).
TEMPLATE_BOARDS_FILE = "boards.yaml"
LOG_DIR = "logs"  # in a generated project: one log per tool run (logs/make.log ...)


class TemplateHandler(TransportHandler):
    """The base of every template server (see the module docstring)."""

    PLATFORM: str = ""
    # How long the session layer waits for the device (0 = forever); most devices answer at once.
    TIMEOUTS = TransportTimeouts(session_start_retry_timeout_sec=1.0, session_start_timeout_sec=10.0,
                                 session_established_timeout_sec=10.0)
    PROJECT_OPTIONS: Sequence[ProjectOption] = ()
    # The folder of the subclass's microtvm_api_server.py: the template, or a generated project.
    project_dir: pathlib.Path

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if module_file is None:
            raise TypeError(f"{cls.__name__}: module {cls.__module__} has no file; a template server is a "
                            "microtvm_api_server.py run as a script or imported (registered in sys.modules)")
        cls.project_dir = pathlib.Path(module_file).resolve().parent

    # ---- what the server is ----------------------------------------------------------------

    @property
    def is_template(self) -> bool:
        return project_gen.is_template(self.project_dir)

    def project_options(self) -> List[ProjectOption]:
        return list(self.PROJECT_OPTIONS)

    def generated_options(self, method: str, options: dict) -> dict:
        """The options build/flash/open_transport act on: the call's merged with what project.yaml
        recorded at generation (options.merge_with_project_yaml); refused in the template."""
        self.require_project(method)
        return merge_with_project_yaml(self.project_dir, options)

    def server_info_query(self, tvm_version: str) -> ServerInfo:
        return project_gen.server_info(self.PLATFORM, self.project_dir, self.project_options())

    def require_project(self, method: str) -> None:
        if self.is_template:
            raise ServerError(f"{method} needs a generated project; {self.project_dir} is the {self.PLATFORM} "
                              "template (run tvmc micro create first)")

    def resolve_board(self, name: str) -> boards.Board:
        own_boards = self.project_dir / TEMPLATE_BOARDS_FILE
        extra = list(boards.load_catalogue(own_boards).values()) if own_boards.is_file() else []
        try:
            return boards.get_board(name, self.PLATFORM, extra)
        except boards.UnknownBoardError as err:
            raise ServerError(f"{err} (add others to boards/boards.yaml)") from None

    def board(self) -> boards.Board:
        """The board a generated project was generated for (project.yaml)."""
        name = project_gen.read_project_yaml(self.project_dir).get("board")
        if not name:
            raise ServerError(f"{self.project_dir / project_gen.PROJECT_YAML} names no board; generate the project again")
        return self.resolve_board(name)

    # ---- generate_project ------------------------------------------------------------------

    def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
        if not self.is_template:
            raise ServerError(f"{self.project_dir} is a generated project; generate new projects from the "
                              f"{self.PLATFORM} template (tvmc micro create ... {self.PLATFORM})")
        board = self.resolve_board(options["board"])
        options = self.check_generation_options(dict(options, board=board.name), board)
        with project_gen.project_dir_removed_on_failure(pathlib.Path(project_dir)) as project_dir:
            model = project_gen.read_mlf(model_library_format_path)
            self.check_model(model, board, options)
            self.lay_out_project(pathlib.Path(model_library_format_path), project_dir, model, options)
            self.write_build_files(project_dir, model, board, options)
            self.write_readme(project_dir, model, board, options)

    def check_generation_options(self, options: dict, board: boards.Board) -> dict:
        """Hook: refuse option values this template cannot generate, before anything is written;
        return the options to generate with (and record in project.yaml)."""
        return options

    def check_model(self, model: project_gen.ModelInfo, board: boards.Board, options: dict) -> None:
        """Hook: refuse a model the board cannot hold."""
        project_gen.check_model_fits(model, board)

    def lay_out_project(self, mlf_path: pathlib.Path, project_dir: pathlib.Path, model: project_gen.ModelInfo,
                        options: dict) -> None:
        """Hook: the project's files before the build files (default: project_gen's layout)."""
        project_gen.lay_out_common(self.project_dir, mlf_path, project_dir, options, model)

    def write_build_files(self, project_dir: pathlib.Path, model: project_gen.ModelInfo, board: boards.Board,
                          options: dict) -> None:
        """Hook: the files that tell the build what the options chose (config.mk, prj.conf ...)."""

    def readme_values(self, project_dir: pathlib.Path, model: project_gen.ModelInfo, board: boards.Board,
                      options: dict) -> dict:
        """The $names project_readme.md may use; a template adds its own."""
        def tensors(ts):
            return "\n".join(f"- `{t.name}`: {t.dtype}{list(t.shape)} ({t.size_bytes:,} B)" for t in ts)
        return {"platform": self.PLATFORM, "board": board.name, "cpu": board.cpu,
                "project_type": options.get("project_type") or "", "model": model.name,
                "inputs": tensors(model.inputs), "outputs": tensors(model.outputs),
                "arena_bytes": f"{model.workspace_size_bytes:,}", "constants_bytes": f"{model.constants_size_bytes:,}"}

    def write_readme(self, project_dir, model, board, options) -> None:
        source = self.project_dir / PROJECT_README_TEMPLATE
        if not source.is_file():
            return
        values = self.readme_values(project_dir, model, board, options)
        text = string.Template(source.read_text(encoding="utf-8")).substitute(values)
        (project_dir / PROJECT_README).write_text(text, encoding="utf-8")
        (project_dir / PROJECT_README_TEMPLATE).unlink(missing_ok=True)

    # ---- build, flash, open_transport --------------------------------------------------------

    def require_tool(self, command: str, install_hint: str) -> str:
        """The path of ``command``, or ServerError "`command` not found: install_hint"."""
        try:
            return tool_run.require_tool(command, install_hint)
        except tool_run.ToolError as err:
            raise ServerError(str(err)) from None

    def require_built(self, relpath) -> pathlib.Path:
        """PROJECT/relpath, which the build makes, or ServerError saying to build first."""
        path = self.project_dir / relpath
        if not path.exists():
            raise ServerError(f"{path} does not exist; build the project first (tvmc micro build)")
        return path

    def run_tool(self, argv: Sequence, what: str, verbose: bool = False, *, env: Optional[Mapping[str, str]] = None,
                 explain: Optional[Callable[[str, int, str], str]] = None) -> str:
        """tool_run.run_tool in the project folder, logged to PROJECT/logs/<what>.log; returns the output."""
        log = self.project_dir / LOG_DIR / ("-".join(what.split()) + ".log")
        try:
            return tool_run.run_tool(argv, what, log, cwd=self.project_dir, env=env, verbose=bool(verbose),
                                     explain=explain)
        except tool_run.ToolError as err:
            raise ServerError(str(err)) from None


def make_argv(project_dir: pathlib.Path) -> List[str]:
    """`make -C PROJECT -jN` (N: this machine's cores): the build command of the make-based templates."""
    return ["make", "-C", str(project_dir), f"-j{os.cpu_count() or 1}"]
