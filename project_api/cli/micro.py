"""``tvmc micro create|build|flash``: generate, build and flash a project through its Project API server.

    tvmc micro create [-f] PROJECT_DIR MLF PLATFORM [--template-dir DIR] [--project-option NAME=VALUE ...]
    tvmc micro build  [-f] PROJECT_DIR PLATFORM [--project-option ...]
    tvmc micro flash       PROJECT_DIR PLATFORM [--project-option ...]

PLATFORM is a template name (a folder of template_projects/; ``crt`` is the legacy name of host) or
``template`` with ``--template-dir``. The options come from the platform's server: ``--list-options``
prints them, and ``--help`` shows them when PLATFORM is on the line.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import shutil
import tempfile
from typing import Callable, Iterator, List, Optional

from .. import client, project_gen, resources
from . import TVMCError
from ._options import (add_project_option_argument, call, check_project_options, declared_options, format_options,
                       options_for_project, parse_project_options, project_api_server, recorded_options,
                       server_options)

LEGACY_PLATFORM_NAMES = {"crt": "host"}  # TVM's tvmc called the host template "crt"
TEMPLATE = "template"
ACTIONS = ("create", "build", "flash")


def platform_name(platform: str) -> str:
    return LEGACY_PLATFORM_NAMES.get(platform, platform)


def template_directory(platform: str, template_dir: Optional[str]) -> pathlib.Path:
    """The template folder PLATFORM (and --template-dir) name, or a TVMCError saying what exists."""
    if platform == TEMPLATE:
        if not template_dir:
            raise TVMCError("platform 'template' needs --template-dir DIR (a folder with microtvm_api_server.py)")
        directory = pathlib.Path(template_dir)
    else:
        if template_dir:
            raise TVMCError(f"--template-dir goes with platform 'template', not '{platform}'")
        known = resources.available_templates()
        if platform_name(platform) not in known:
            raise TVMCError(f"unknown platform '{platform}'; choose one of: {', '.join(known + ['crt', TEMPLATE])}")
        directory = resources.template_dir(platform_name(platform))
    if not (directory / client.SERVER_PYTHON_FILENAME).is_file():
        raise TVMCError(f"{directory} has no {client.SERVER_PYTHON_FILENAME}: it is not a project template")
    return directory


def _server_dir(action: str, args) -> pathlib.Path:
    if action == "create":
        return template_directory(args.platform, args.template_dir)
    project_dir = pathlib.Path(args.project_dir)
    if project_dir.is_file():
        raise TVMCError(f"{project_dir} is a file, not a project directory; give the folder tvmc micro create made")
    if not (project_dir / project_gen.MLF_FILENAME).is_file():
        raise TVMCError(f"{project_dir} is not a generated project (no {project_gen.MLF_FILENAME}); "
                        f"run tvmc micro create first")
    return project_dir


@contextlib.contextmanager
def _old_project_set_aside(project_dir: pathlib.Path) -> Iterator[Callable[[pathlib.Path], pathlib.Path]]:
    """For create -f: the old project is renamed aside (in the same folder) while the new one is
    generated, deleted once that succeeded and put back if it failed. So -f never loses the
    project, nor the archive or a file option it is about to read from inside it (``tvmc micro
    create -f p p/model.tar host``). Yields where a path inside the old project is meanwhile."""
    if not project_dir.exists():
        yield lambda path: path
        return
    try:
        aside = pathlib.Path(tempfile.mkdtemp(prefix=f".{project_dir.name}.replaced-", dir=project_dir.parent))
        old = aside / project_dir.name
        project_dir.rename(old)
    except OSError as err:
        raise TVMCError(f"cannot replace {project_dir}: {err.strerror or err}") from err

    def moved(path: pathlib.Path) -> pathlib.Path:
        try:
            return old / path.relative_to(project_dir)
        except ValueError:
            return path

    try:
        yield moved
    except BaseException:
        if project_dir.is_dir() and not project_dir.is_symlink():
            shutil.rmtree(project_dir, ignore_errors=True)  # what the failed generation left
        old.rename(project_dir)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside)


class MicroCommand:
    name = "micro"
    help = "create, build and flash a microcontroller project from a Model Library Format archive"

    def add_arguments(self, parser: argparse.ArgumentParser, argv: List[str]) -> None:
        actions = parser.add_subparsers(dest="micro_action", metavar="ACTION")
        actions.required = True
        for action in ACTIONS:
            sub = actions.add_parser(action, help=f"{action} a project", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
            if action != "flash":
                sub.add_argument("-f", "--force", action="store_true",
                                 help="replace an existing project directory" if action == "create"
                                 else "remove an existing build/ directory first")
            sub.add_argument("project_dir", metavar="PROJECT_DIR")
            if action == "create":
                sub.add_argument("mlf", metavar="MLF", help="the Model Library Format archive (tvmc compile)")
            sub.add_argument("platform", metavar="PLATFORM", help=", ".join(resources.available_templates())
                             + ", crt (= host), or 'template' with --template-dir")
            sub.add_argument("--template-dir", help="the template folder, for PLATFORM 'template'")
            add_project_option_argument(sub)
            sub.add_argument("--list-options", action="store_true", help="print the platform's project options and exit")
            if "-h" in argv or "--help" in argv:
                self._describe_options(sub, action, argv)

    def _describe_options(self, sub: argparse.ArgumentParser, action: str, argv: List[str]) -> None:
        """For --help with PLATFORM on the line, ask its server and show its options."""
        if action not in argv:
            return
        lenient = [a for a in argv[argv.index(action) + 1:] if a not in ("-h", "--help")]
        try:
            args, _ = sub.parse_known_args(lenient)
            with project_api_server(_server_dir(action, args)) as api:
                sub.epilog = f"project options of platform {args.platform}:\n" + format_options(server_options(api)) + "\n"
        except (TVMCError, SystemExit):
            pass  # not enough on the line to know the platform: plain help

    def run(self, args) -> int:
        action = args.micro_action
        given = parse_project_options(args.project_option)
        server_dir = _server_dir(action, args)
        with project_api_server(server_dir, debug=args.debug) as api:
            info = call(api, "server_info_query", "")
            declared = declared_options(info)
            if args.list_options:
                print(f"project options of platform {info.get('platform_name')}:\n" + format_options(declared))
                return 0
            if action != "create" and args.platform != TEMPLATE and \
                    platform_name(args.platform) != info.get("platform_name"):
                raise TVMCError(f"{args.project_dir} is a {info.get('platform_name')} project, not {args.platform}")
            recorded = {} if action == "create" else recorded_options(server_dir)
            check_project_options(given, declared, "generate_project" if action == "create" else action,
                                  args.platform, recorded)
            if action == "create":
                self._check_create(args)
                project_dir = pathlib.Path(args.project_dir).resolve()
                with _old_project_set_aside(project_dir) as moved:
                    # a file option naming a file of the old project (extra_files_tar) follows it
                    options = {name: str(moved(pathlib.Path(value).resolve()))
                               if value and project_dir in pathlib.Path(value).resolve().parents else value
                               for name, value in given.items()}
                    call(api, "generate_project", moved(pathlib.Path(args.mlf).resolve()), None, project_dir, options)
                print(f"generated {info.get('platform_name')} project in {args.project_dir}")
                return 0
            options = options_for_project(server_dir, given)
            if action == "build":
                self._prepare_build_dir(args)
            call(api, action, options)
        return 0

    @staticmethod
    def _check_create(args) -> None:
        """PROJECT_DIR must be new, or with -f a generated project (or empty); MLF a file."""
        mlf_path = pathlib.Path(args.mlf)
        if not mlf_path.is_file():
            raise TVMCError(f"Model Library Format archive {mlf_path} "
                            f"{'is a directory' if mlf_path.is_dir() else 'does not exist'}; create it with tvmc compile")
        project_dir = pathlib.Path(args.project_dir)
        if project_dir.exists() and not project_dir.is_dir():
            raise TVMCError(f"{project_dir} is a file, not a project directory; pick another PROJECT_DIR")
        if not project_dir.exists():
            return
        if not args.force:
            raise TVMCError(f"project directory {project_dir} already exists; pass -f to replace it")
        # -f replaces: only something that is a generated project (or empty), never a stray folder.
        is_project = (project_dir / client.SERVER_PYTHON_FILENAME).is_file() or not any(project_dir.iterdir())
        if not is_project:
            raise TVMCError(f"{project_dir} exists and is not a generated project; refusing to delete it with -f")

    @staticmethod
    def _prepare_build_dir(args) -> None:
        build_dir = pathlib.Path(args.project_dir) / "build"
        if build_dir.exists():
            if not args.force:
                raise TVMCError(f"{build_dir} already exists; pass -f to rebuild from scratch")
            shutil.rmtree(build_dir) if build_dir.is_dir() and not build_dir.is_symlink() else build_dir.unlink()
