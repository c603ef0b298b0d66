"""Project options in one place: what an option is (``ProjectOption``: name, type, choices,
default, which methods take it), the options every template shares (``default_project_options``),
turning what a client sent into the typed dict a handler receives (``resolve_options``), and the
merge of that dict with the options a project was generated with (``merge_with_project_yaml``).

The server framework, the template framework and the ``tvmc`` command line all use this module;
the wire form of an option is ``ProjectOption.to_json`` (docs/project-api.md).
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from typing import Any, Dict, List, Optional, Sequence

_LOG = logging.getLogger(__name__)

OPTION_TYPES = ("bool", "int", "str")


class OptionError(ValueError):
    """An option value the method cannot take; the message names the option and the method."""


@dataclasses.dataclass(frozen=True)
class ProjectOption:
    """One project option as advertised by server_info_query.

    ``required`` / ``optional`` name the methods that need / accept the option. ``type`` is the
    wire type name: "bool", "int" or "str"."""

    name: str
    choices: Optional[Sequence[Any]] = None
    default: Any = None
    type: str = "str"
    required: Sequence[str] = ()
    optional: Sequence[str] = ()
    help: str = ""

    def __post_init__(self):
        if self.type not in OPTION_TYPES:
            raise ValueError(f"option '{self.name}': type must be one of {OPTION_TYPES}, not {self.type!r}")
        # Normalise to tuples so options are hashable and compare equal however they were given.
        for field in ("required", "optional"):
            object.__setattr__(self, field, tuple(getattr(self, field) or ()))
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))

    def replace(self, attributes: Optional[dict] = None, **changes) -> "ProjectOption":
        """A copy with fields changed (legacy servers pass a dict, new code keywords)."""
        return dataclasses.replace(self, **dict(attributes or {}, **changes))

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "choices": None if self.choices is None else list(self.choices),
            "default": self.default,
            "type": self.type,
            "required": list(self.required),
            "optional": list(self.optional),
            "help": self.help,
        }

    @classmethod
    def from_json(cls, obj: dict) -> "ProjectOption":
        return cls(
            name=obj["name"],
            choices=obj.get("choices"),
            default=obj.get("default"),
            type=obj.get("type") or "str",
            required=obj.get("required") or (),
            optional=obj.get("optional") or (),
            help=obj.get("help") or "",
        )

    def convert(self, value: Any) -> Any:
        """Return ``value`` as this option's type; raise ValueError saying what was expected."""
        if self.type == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
                return _BOOL_WORDS[value.strip().lower()]
            raise ValueError(f"want a bool (true/false), got {value!r}")
        if self.type == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, str):
                try:
                    return int(value.strip(), 0)
                except ValueError:
                    pass
            raise ValueError(f"want an integer, got {value!r}")
        if isinstance(value, str):
            return value
        raise ValueError(f"want a string, got {value!r}")


_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def default_project_options(**changes) -> List[ProjectOption]:
    """The options most templates share (the legacy set); ``name={"field": value}`` changes one."""
    options = [
        ProjectOption("verbose", type="bool", default=False, optional=("generate_project", "build"),
                      help="Show the build tool's commands and output."),
        ProjectOption("project_type", type="str", default="host_driven", choices=("host_driven",),
                      optional=("generate_project",), help="Type of project to generate."),
        ProjectOption("board", type="str", required=("generate_project",), help="Name of the board to build for."),
        ProjectOption("warning_as_error", type="bool", default=False, optional=("generate_project",),
                      help="Compile with -Werror."),
        ProjectOption("compile_definitions", type="str", optional=("generate_project",),
                      help="Extra preprocessor definitions, e.g. 'A=1 B' (space or comma separated)."),
        ProjectOption("extra_files_tar", type="str", optional=("generate_project",),
                      help="A tar archive whose contents are extracted into the generated project."),
    ]
    by_name = {o.name: o for o in options}
    for name, fields in changes.items():
        if name not in by_name:
            raise ValueError(f"option '{name}' is not a default project option ({', '.join(by_name)})")
        by_name[name] = by_name[name].replace(**fields)
    return list(by_name.values())


class Options(dict):
    """The options a handler receives; ``given`` names those the client set (not defaulted), so a
    generated project can prefer what it was generated with (merge_with_project_yaml)."""

    given: frozenset = frozenset()
    # Options whose required/optional lists name the method being called: only those can change
    # what the method does. The legacy host fills in every advertised option's default on every
    # call, so a generation-time option (board, warning_as_error, ...) arriving with `build` says
    # nothing about what the user wants; merge_with_project_yaml keeps project.yaml's value.
    applies: frozenset = frozenset()


def resolve_options(method: str, declared: Sequence[ProjectOption], given: dict) -> Options:
    """The typed options dict a handler method receives: every declared option (converted, or its
    default), unknown keys dropped; raises OptionError naming the option and the method."""
    resolved = Options()
    resolved.given = frozenset(o.name for o in declared if given.get(o.name) is not None)
    resolved.applies = frozenset(o.name for o in declared if method in o.required or method in o.optional)
    for option in declared:
        value = given.get(option.name)
        if value is None:
            value = option.default
        else:
            try:
                value = option.convert(value)
            except ValueError as err:
                raise OptionError(f"method {method}: option '{option.name}': {err}") from None
            if option.choices is not None and value not in option.choices:
                raise OptionError(f"method {method}: option '{option.name}' is {value!r}; choose one of: "
                                  + ", ".join(str(c) for c in option.choices))
        if value is None and method in option.required:
            hint = f" (one of: {', '.join(str(c) for c in option.choices)})" if option.choices else ""
            raise OptionError(f"method {method} requires option '{option.name}'{hint}")
        resolved[option.name] = value
    unknown = sorted(set(given) - set(resolved))
    if unknown:
        _LOG.debug("method %s: ignoring unknown options %s", method, ", ".join(unknown))
    return resolved


def merge_with_project_yaml(project_dir: pathlib.Path, options: Dict) -> Dict:
    """Options for build/flash/open_transport of a generated project: what the call set
    explicitly for an option that applies to the method, else what generation recorded in
    project.yaml, else the option's default. (See Options.applies for why a value the call
    sent for a generation-time option is not taken.)"""
    from .project_gen import read_project_yaml  # here: project_gen imports this module

    recorded = read_project_yaml(project_dir)
    explicit = getattr(options, "given", None)  # Options knows; a plain dict: None = unset
    applies = getattr(options, "applies", None)
    merged = dict(options)
    for name, value in recorded.items():
        applies_here = applies is None or name in applies
        if explicit is None:
            call_wins = merged.get(name) is not None
        else:
            call_wins = name in explicit and applies_here
        # A recorded null means "generated without it": the truth for a generation-time option,
        # but for one this method takes, the option's current default stands.
        if not call_wins and (value is not None or not applies_here):
            merged[name] = value
    return merged


def compile_definitions(value: Optional[str]) -> List[str]:
    """The compile_definitions option ('A=1 B', or comma separated) as -D flags."""
    if not value:
        return []
    return [f"-D{d}" for d in value.replace(",", " ").split()]
