"""The board catalogue (boards/boards.yaml), read by every template server."""

from __future__ import annotations

import dataclasses
import functools
from typing import Dict, List, Optional, Sequence

import yaml

from . import resources


class UnknownBoardError(ValueError):
    """A board name that is not in the catalogue (or not for the platform asked for)."""


@dataclasses.dataclass(frozen=True)
class Board:
    name: str  # our name, also the value of the `board` project option
    platform: str  # template that serves it: host, cortex_m, zephyr, arduino
    cpu: str  # e.g. cortex-m4, atmega2560, native
    fpu: bool
    ram_bytes: int
    flash_bytes: int
    emulator: Optional[dict] = None  # {"kind": "qemu", "machine": ...} or {"kind": "simavr", "mcu": ...}
    usb_vid: Optional[str] = None  # hex strings, e.g. "0483"
    usb_pid: Optional[str] = None
    fqbn: Optional[str] = None  # Arduino fully qualified board name
    zephyr_board: Optional[str] = None  # Zephyr board name (with qualifiers)
    aliases: tuple = ()  # legacy spellings accepted for `board`
    extra: dict = dataclasses.field(default_factory=dict)  # platform-specific keys

    @property
    def is_emulated(self) -> bool:
        return self.emulator is not None


_FIELDS = {f.name for f in dataclasses.fields(Board)} - {"name", "extra", "aliases"}


@functools.lru_cache(maxsize=None)
def _catalogue() -> Dict[str, Board]:
    return load_catalogue(resources.boards_file())


def load_catalogue(path) -> Dict[str, Board]:
    """The boards of a catalogue file (boards/boards.yaml, or the boards.yaml a template outside
    this repository brings beside its server), by name."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    boards: Dict[str, Board] = {}
    for name, entry in (raw.get("boards") or {}).items():
        known = {k: v for k, v in entry.items() if k in _FIELDS}
        extra = {k: v for k, v in entry.items() if k not in _FIELDS and k != "aliases"}
        missing = {"platform", "cpu", "fpu", "ram_bytes", "flash_bytes"} - set(known)
        if missing:
            raise ValueError(f"{path}: board '{name}' lacks {', '.join(sorted(missing))}")
        for key in ("usb_vid", "usb_pid"):
            if known.get(key) is not None:
                known[key] = f"{int(str(known[key]), 16):04x}"
        boards[name] = Board(name=name, aliases=tuple(entry.get("aliases", ())), extra=extra, **known)
    return boards


def all_boards(platform: Optional[str] = None) -> List[Board]:
    return [b for b in _catalogue().values() if platform is None or b.platform == platform]


def board_names(platform: Optional[str] = None) -> List[str]:
    return sorted(b.name for b in all_boards(platform))


def get_board(name: str, platform: Optional[str] = None, extra: Sequence[Board] = ()) -> Board:
    """Look a board up by name, legacy alias or Zephyr board name (``mps2/an385``), in the
    catalogue and ``extra``; raise UnknownBoardError naming the choices."""
    candidates = all_boards(platform) + [b for b in extra if platform is None or b.platform == platform]
    for board in candidates:
        if name == board.name or name in board.aliases or (board.zephyr_board and name == board.zephyr_board):
            return board
    where = f" for platform '{platform}'" if platform else ""
    raise UnknownBoardError(
        f"unknown board '{name}'{where}; known boards: {', '.join(sorted(b.name for b in candidates))}"
    )


def board_choices(platform: str) -> tuple:
    """Every accepted spelling of the platform's boards (names, then legacy aliases): the
    ``choices`` of a template's ``board`` option."""
    boards = sorted(all_boards(platform), key=lambda b: b.name)
    return tuple(b.name for b in boards) + tuple(a for b in boards for a in b.aliases)
