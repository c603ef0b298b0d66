"""Project options on the command line, shared by ``tvmc micro`` and ``tvmc run --device micro``.

``--project-option NAME=VALUE ...`` values travel as strings (the server converts them, as TVM's
tvmc did); names are checked here against what the server advertises so a typo is a one-line
error naming the known options. A generated project's own options (project.yaml) are the base
that the command line overrides, so ``tvmc micro build PROJECT PLATFORM`` needs no repetition.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
from typing import Dict, Iterator, List, Optional, Sequence

from .. import client, errors, project_gen
from ..options import ProjectOption
from . import TVMCError


def add_project_option_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project-option", dest="project_option", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
        help="options for the platform's Project API server (see --list-options)")


def parse_project_options(values: Sequence[str]) -> Dict[str, str]:
    options = {}
    for item in values or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise TVMCError(f"--project-option '{item}' must be NAME=VALUE (e.g. board=host)")
        options[name.strip()] = value
    return options


def check_project_options(given: Dict[str, object], declared: Sequence[ProjectOption], method: str, platform: str,
                          recorded: Optional[Dict[str, object]] = None) -> None:
    """Unknown names in ``given`` (the command line) and required options missing from both it and
    ``recorded`` (a project's project.yaml), as one-line TVMCErrors."""
    known = {o.name: o for o in declared}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TVMCError(f"unknown project option(s) {', '.join(unknown)} for platform {platform}; "
                        f"its options are: {', '.join(sorted(known)) or '(none)'}")
    for option in declared:
        if (recorded or {}).get(option.name) is not None:
            try:
                option.convert(recorded[option.name])
            except ValueError as err:
                raise TVMCError(f"project.yaml option '{option.name}': {err}; fix it or regenerate the project "
                                f"with tvmc micro create -f") from err
        present = given.get(option.name) is not None or (recorded or {}).get(option.name) is not None
        if method in option.required and not present and option.default is None:
            choices = f" (one of: {', '.join(map(str, option.choices))})" if option.choices else ""
            raise TVMCError(f"platform {platform} needs --project-option {option.name}=VALUE for {method}{choices}")


def format_options(declared: Sequence[ProjectOption]) -> str:
    """The options as a readable table, for --help and --list-options."""
    lines = []
    for o in declared:
        facts = [o.type]
        if o.choices:
            facts.append("choices: " + ", ".join(map(str, o.choices)))
        if o.default is not None:
            facts.append(f"default: {o.default}")
        if o.required:
            facts.append("required by: " + ", ".join(o.required))
        lines.append(f"  {o.name}=VALUE  ({'; '.join(facts)})")
        if o.help:
            lines.append(f"      {o.help}")
    return "\n".join(lines) or "  (none)"


@contextlib.contextmanager
def project_api_server(directory: pathlib.Path, debug: bool = False) -> Iterator[client.ProjectAPIClient]:
    """A running server for a template or project directory; stopped on exit, whatever happens."""
    try:
        api = client.instantiate_from_dir(directory, debug=debug)
    except client.ServerNotFoundError as err:
        raise TVMCError(str(err)) from err
    with api:
        yield api


def server_options(api: client.ProjectAPIClient, tvm_version: str = "") -> List[ProjectOption]:
    return declared_options(call(api, "server_info_query", tvm_version))


def declared_options(info: dict) -> List[ProjectOption]:
    """The project options a server_info_query reply advertises."""
    return [ProjectOption.from_json(o) for o in info.get("project_options", [])]


def call(api: client.ProjectAPIClient, method: str, *args):
    """Call a server method; its failures become one-line TVMCErrors."""
    try:
        return getattr(api, method)(*args)
    except client.ServerError as err:
        raise TVMCError(f"{method} failed: {err.message}") from err
    except client.RPCError as err:  # bad params or options: the message names them and the method
        raise TVMCError(err.message) from err
    except (client.ProjectAPIError, errors.IoTimeoutError, errors.TransportClosedError,
            errors.UnsupportedTVMVersionError) as err:
        raise TVMCError(f"{method} failed: {err}") from err


def recorded_options(project_dir: pathlib.Path) -> Dict[str, object]:
    """The options in a project's project.yaml; a corrupt file is a one-line TVMCError."""
    try:
        return project_gen.read_project_yaml(project_dir)
    except project_gen.ProjectGenerationError as err:
        raise TVMCError(str(err)) from err


def options_for_project(project_dir: pathlib.Path, given: Dict[str, str]) -> Dict[str, object]:
    """What a generated project was created with (project.yaml), overridden by ``given``."""
    merged = {k: v for k, v in recorded_options(project_dir).items() if v is not None}
    merged.update(given)
    return merged
