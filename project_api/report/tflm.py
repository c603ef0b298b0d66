"""The arena tflite-micro would allocate for a .tflite model, when the tflite-micro package is installed.

tflite-micro's recording allocator prints its totals on the C stderr, so the interpreter runs in
a child Python whose stderr is read: "Arena allocation total/head/tail N bytes" (head: the
tensor arena, which in tflite-micro also holds inputs and outputs; tail: persistent structures).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

_SCRIPT = """
import sys
from tflite_micro.python.tflite_micro import runtime
runtime.Interpreter.from_file(sys.argv[1]).print_allocations()
"""
_LINE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


@dataclasses.dataclass(frozen=True)
class TflmArena:
    total_bytes: int
    head_bytes: int   # tensors (activations, inputs, outputs)
    tail_bytes: int   # persistent: tensor structs, op data, node registrations


def tflm_arena(model_path: Path, timeout_sec: float = 60.0) -> Optional[TflmArena]:
    """tflite-micro's arena for a .tflite file; None without the package or for another format."""
    if Path(model_path).suffix.lower() != ".tflite" or importlib.util.find_spec("tflite_micro") is None:
        return None
    try:
        result = subprocess.run([sys.executable, "-c", _SCRIPT, str(model_path)], capture_output=True,
                                text=True, timeout=timeout_sec)
    except subprocess.TimeoutExpired:
        return None
    found = {kind: int(n) for kind, n in _LINE.findall(result.stderr)}
    if result.returncode != 0 or "total" not in found:
        return None
    return TflmArena(found["total"], found.get("head", 0), found.get("tail", 0))
