"""ROM and stack of a model's C, measured by compiling it for the target with its cross compiler.

The MLF's kernels and static runtime are compiled (not linked) with the flags of our Cortex-M
template (``-Os -ffunction-sections -fdata-sections``) plus ``-fstack-usage``; the object files'
sections give code (.text) and weights (.rodata), ``nm`` the code of each kernel, and the ``.su``
files each function's frame. With no cross compiler installed the host's gcc is used and the
report says so: its figures are not the device's.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Optional

DEFAULT_MCPU = "cortex-m4"
_FLAGS = ["-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-fno-common", "-fstack-usage"]


@dataclasses.dataclass
class Footprint:
    compiler: str                  # the command used, e.g. "arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb"
    cross: bool                    # False: host gcc, figures are not the device's
    code_bytes: int                # .text of kernels + runtime
    weight_bytes: int              # .rodata (the weights and kernel tables)
    data_bytes: int                # .data (initialised RAM, also stored in flash)
    bss_bytes: int                 # .bss (the arena)
    function_code: Dict[str, int]  # function -> bytes of code
    function_stack: Dict[str, int] # function -> bytes of its frame (-fstack-usage)
    stack_bytes: int               # run function's frame + the deepest kernel frame + the deepest helper frame

    @property
    def rom_bytes(self) -> int:
        return self.code_bytes + self.weight_bytes + self.data_bytes


def _compiler(mcpu: Optional[str]):
    mcpu = mcpu or DEFAULT_MCPU
    if mcpu.startswith("cortex-m") and shutil.which("arm-none-eabi-gcc"):
        return "arm-none-eabi-", [f"-mcpu={mcpu}", "-mthumb"], True
    if mcpu.startswith(("atmega", "attiny")) and shutil.which("avr-gcc"):
        return "avr-", [f"-mmcu={mcpu}"], True
    if shutil.which("gcc"):
        return "", [], False
    return None, None, False


def measure(sources: Dict[str, str], header_name: str, header: str, c_name: str,
            mcpu: Optional[str] = None) -> Optional[Footprint]:
    """Compile ``sources`` for ``mcpu`` (default cortex-m4); None when no C compiler is installed."""
    prefix, cpu_flags, cross = _compiler(mcpu)
    if prefix is None:
        return None
    gcc = prefix + "gcc"
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    code: Dict[str, int] = {}
    stack: Dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="mtp-footprint-") as tmp:
        work = Path(tmp)
        (work / header_name).write_text(header)
        for name, text in sources.items():
            source = work / name
            source.write_text(text)
            obj = source.with_suffix(".o")
            result = subprocess.run([gcc, *cpu_flags, *_FLAGS, f"-I{work}", "-c", str(source), "-o", str(obj)],
                                    cwd=work, capture_output=True, text=True)
            if result.returncode != 0:
                first = (result.stderr.strip().splitlines() or ["(no output)"])[0]
                raise RuntimeError(f"{gcc} could not compile {name} for the footprint: {first}")
            for section, size in _sections(prefix + "size", obj).items():
                key = next((k for k in ("text", "rodata", "data", "bss") if section == f".{k}"
                            or section.startswith(f".{k}.")), None)
                if key:
                    sizes[key] += size
            code.update(_function_sizes(prefix + "nm", obj))
            su = obj.with_suffix(".su")
            if su.is_file():
                for line in su.read_text().splitlines():
                    fields = line.split("\t")
                    if len(fields) >= 2 and fields[1].isdigit():
                        stack[fields[0].rsplit(":", 1)[-1]] = int(fields[1])
    run = f"tvmgen_{c_name}_run"
    kernel_names = [f for f in stack if f.startswith(f"tvmgen_{c_name}_") and f != run]
    helpers = [f for f in stack if f not in kernel_names and f != run]
    # Kernels are called only by the run function and call only helpers (micro-kernels, copies),
    # which call nothing else of the model: run + deepest kernel + deepest helper bounds the stack.
    estimate = stack.get(run, 0) + max((stack[f] for f in kernel_names), default=0) \
        + max((stack[f] for f in helpers), default=0)
    compiler = " ".join([gcc, *cpu_flags, "-Os"])
    return Footprint(compiler, cross, sizes["text"], sizes["rodata"], sizes["data"], sizes["bss"],
                     code, stack, estimate)


def _sections(size_tool: str, obj: Path) -> Dict[str, int]:
    out = subprocess.run([size_tool, "-A", str(obj)], check=True, capture_output=True, text=True).stdout
    sizes: Dict[str, int] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(".") and fields[1].isdigit():
            sizes[fields[0]] = sizes.get(fields[0], 0) + int(fields[1])
    return sizes


def _function_sizes(nm_tool: str, obj: Path) -> Dict[str, int]:
    out = subprocess.run([nm_tool, "-S", "--defined-only", str(obj)], check=True, capture_output=True, text=True).stdout
    sizes: Dict[str, int] = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in "tT":
            sizes[fields[3]] = int(fields[1], 16)
    return sizes
