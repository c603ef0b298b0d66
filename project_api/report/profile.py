"""``tvmc run --profile``: the device's per-kernel tick table as KernelTimes, in the unit the board counts.

"cycles" when the board's timer counts CPU cycles (mtp_platform_timer_is_cycles). On QEMU, which
models no cycles, our cortex_m template runs the guest with ``-icount shift=0``: one instruction
is one nanosecond of virtual time, so the SysTick ticks are a deterministic instruction count
(40 instructions a tick at 25 MHz, +-1 tick per timer read pair) and the unit is "instructions".
Elsewhere (the host board's clock_gettime, Zephyr's QEMU without -icount) only time is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..rpc.commands import ProfiledRuns
from . import KernelTimes

ICOUNT_NS_PER_INSTRUCTION = 1.0  # -icount shift=0


def board_cpu(project_dir: Path) -> Optional[str]:
    """The CPU of a project's board (for the report's footprint), None when unknown."""
    from .. import boards, project_gen

    board_name = project_gen.read_project_yaml(project_dir).get("board")
    try:
        return boards.get_board(board_name).cpu if board_name else None
    except boards.UnknownBoardError:  # a renamed board
        return None


def counts_instructions(project_dir: Path) -> bool:
    """True for a project whose device is a QEMU machine run with -icount (our cortex_m template)."""
    from .. import boards, project_gen

    board_name = project_gen.read_project_yaml(project_dir).get("board")
    if not board_name:
        return False
    try:
        board = boards.get_board(board_name)
    except boards.UnknownBoardError:  # a renamed board: no claim about the unit
        return False
    return board.platform == "cortex_m" and (board.emulator or {}).get("kind") == "qemu"


def kernel_times(profiled: ProfiledRuns, whole_model_seconds: float, instructions: bool) -> KernelTimes:
    hz, runs = profiled.timer_hz, profiled.runs
    seconds = [t / hz / runs for t in profiled.call_ticks]
    if profiled.timer_is_cycles:
        unit, counts = "cycles", [t / runs for t in profiled.call_ticks]
        total: Optional[float] = whole_model_seconds * hz
        note = f"Cycles from the board's cycle-counting timer ({hz:,} Hz)."
    elif instructions:
        unit = "instructions"
        counts = [s * 1e9 / ICOUNT_NS_PER_INSTRUCTION for s in seconds]
        total = whole_model_seconds * 1e9 / ICOUNT_NS_PER_INSTRUCTION
        note = (f"QEMU models no cycles: with -icount shift=0 one instruction is 1 ns of virtual time, so the "
                f"{hz / 1e6:g} MHz SysTick counts {1e9 / hz:g} instructions a tick; 'instructions' are exact to "
                f"+-{1e9 / hz:g} per kernel call.")
    else:
        unit, counts, total = "", None, None
        note = f"The board's timer ({hz:,} Hz) does not count cycles: times only."
    return KernelTimes(seconds, whole_model_seconds, unit, counts, total, runs, note)
