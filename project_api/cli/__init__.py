"""The ``tvmc`` command line: ``tvmc compile``, ``tvmc micro create|build|flash``, ``tvmc run``, ``tvmc tune``.

Each command is a class (as in west) with ``name``, ``help``, ``add_arguments(parser)`` and
``run(args) -> int``; this module only dispatches. A user error is a ``TVMCError``: it prints as
one line ``tvmc: error: ...`` with exit status 1, never a traceback (``--debug`` shows one).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional


class TVMCError(Exception):
    """A problem the user can fix: the message names it and says what to do."""


# module name -> command class name; imported lazily so `tvmc --help` does not import TVM.
_COMMANDS = {
    "compile": ("project_api.cli.compile", "CompileCommand"),
    "micro": ("project_api.cli.micro", "MicroCommand"),
    "run": ("project_api.cli.run", "RunCommand"),
    "tune": ("project_api.cli.tune", "TuneCommand"),
}


def _load(name):
    module_name, class_name = _COMMANDS[name]
    return getattr(importlib.import_module(module_name), class_name)()


def build_parser(argv: List[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tvmc", description="microtvm-projects: TVM models on microcontrollers")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # Only the command named on the line is imported: some commands ask a Project API server for
    # their options while building their parser (tvmc micro create PROJECT MLF PLATFORM --help).
    wanted = next((a for a in argv if a in _COMMANDS), None)
    for name in _COMMANDS:
        if wanted is not None and name != wanted:
            sub.add_parser(name)
            continue
        command = _load(name)  # a command that cannot be imported is a bug: its traceback says where
        cmd_parser = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(cmd_parser, argv)
        cmd_parser.set_defaults(_command=command)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        import logging

        logging.basicConfig(
            level=logging.DEBUG if args.debug else (logging.INFO if args.verbose else logging.WARNING),
            format="%(levelname)s %(name)s: %(message)s",
        )
        return int(args._command.run(args) or 0)
    except TVMCError as err:
        if debug:
            raise
        print(f"tvmc: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tvmc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
