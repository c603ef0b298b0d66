"""Standalone images (cortex_m ``standalone``, zephyr ``aot_standalone_demo``): the inputs embedded
at generation (``inputs_source``) and the one reader of the records they print (``parse``).

The image prints exact bytes in hex (no printf, no float formatting on the device); this module
turns them back into arrays. From a shell, in a generated project::

    make run                                              # cortex_m: its Makefile pipes through this
    python3 -m project_api.standalone . < console.txt     # any captured console (zephyr, ...)

prints each output as values (with its name, dtype and shape), the run's status, ticks per
inference and stack use.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import List, Optional

import numpy as np

from .project_gen import MLF_FILENAME, ProjectGenerationError, read_mlf


def _c_bytes(data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return ",\n  ".join(rows)


def inputs_source(model, npz_path: Optional[str]) -> str:
    """src/standalone_inputs.c: the inputs of a standalone image (the standalone_inputs option, a
    .npz by input name; an input it lacks stays zero), checked against the model (ModelInfo)."""
    arrays = {}
    if npz_path:
        try:
            with np.load(npz_path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as err:
            raise ProjectGenerationError(f"cannot read standalone_inputs {npz_path} as .npz: {err}") from err
        unknown = set(arrays) - {t.name for t in model.inputs}
        if unknown:
            raise ProjectGenerationError(
                f"standalone_inputs {npz_path} has arrays {sorted(unknown)} that are not inputs of model "
                f"'{model.name}' (inputs: {[t.name for t in model.inputs]})")
    lines = ["/* Generated at project generation from the standalone_inputs option: do not edit. */",
             "#include <stdint.h>", "", '#include "standalone_inputs.h"', ""]
    pointers = []
    for i, tensor in enumerate(model.inputs):
        if tensor.name not in arrays:
            pointers.append("0")  # the zero-initialised input buffer
            continue
        given = arrays[tensor.name]
        value = given.astype(tensor.dtype)
        if value.size != int(np.prod(tensor.shape)) or not np.array_equal(value, given):
            raise ProjectGenerationError(
                f"standalone_inputs: '{tensor.name}' is {given.dtype}{list(given.shape)} but the model wants "
                f"{tensor.dtype}{list(tensor.shape)}; convert it (same element count, values exact in {tensor.dtype})")
        data = np.ascontiguousarray(value).astype(value.dtype.newbyteorder("<")).tobytes()
        lines += [f"/* {tensor.name} */", f"static const uint8_t input{i}[{len(data)}] = {{\n  {_c_bytes(data)}\n}};"]
        pointers.append(f"input{i}")
    lines += ["", f"const uint8_t *const mtp_standalone_inputs[{max(len(pointers), 1)}] = "
                  f"{{{', '.join(pointers) or '0'}}};", ""]
    return "\n".join(lines)


def parse(text: str, outputs) -> dict:
    """Decode a standalone image's records. ``outputs`` are the model's output tensors (objects
    with ``dtype`` and ``shape``, e.g. project_gen.ModelInfo.outputs). Returns {"outputs":
    [ndarray], "ticks": {runs: ticks}, "tick_hz", "stack_bytes", "status", "model"}; raises
    ValueError when the output is incomplete."""
    result = {"outputs": [None] * len(outputs), "ticks": {}}
    lines = text.splitlines()
    if "end" not in (line.strip() for line in lines):
        raise ValueError(f"the standalone image stopped before printing 'end'; it printed: {text[-300:]!r}")
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "mtp-standalone" and len(fields) == 2:
            result["model"] = fields[1]
        elif fields[0] == "output" and len(fields) == 3:
            index = int(fields[1], 16)
            tensor = outputs[index]
            raw = bytes.fromhex(fields[2])
            result["outputs"][index] = np.frombuffer(raw, dtype=np.dtype(tensor.dtype).newbyteorder("<")) \
                .astype(tensor.dtype).reshape(tensor.shape)
        elif fields[0] == "ticks" and len(fields) == 3:
            result["ticks"][int(fields[1], 16)] = int(fields[2], 16)
        elif fields[0] in ("tick_hz", "stack", "status") and len(fields) == 2:
            key = {"stack": "stack_bytes"}.get(fields[0], fields[0])
            result[key] = int(fields[1], 16)
    if any(o is None for o in result["outputs"]) or "status" not in result:
        raise ValueError(f"the standalone image's output lacks outputs or status: {text[-300:]!r}")
    return result


def ticks_per_inference(ticks: dict) -> Optional[float]:
    """Ticks of one inference: (N runs - the first run) / (N - 1), which cancels the timer's own
    cost; the first run alone when the image ran once."""
    many = max(ticks, default=None)
    if many is None:
        return None
    if many > 1 and 1 in ticks:
        return (ticks[many] - ticks[1]) / (many - 1)
    return float(ticks[many])


def describe(result: dict, outputs) -> List[str]:
    """The decoded records as lines a person reads."""
    lines = []
    for tensor, value in zip(outputs, result["outputs"]):
        values = np.array2string(value, precision=6, separator=", ", threshold=64)
        lines.append(f"output {tensor.name} ({tensor.dtype}{list(tensor.shape)}): {values}")
    lines.append(f"status {result['status']}" + (" (ok)" if result["status"] == 0 else " (the model failed)"))
    per_run = ticks_per_inference(result["ticks"])
    if per_run is not None:
        hz = result.get("tick_hz")
        timing = f" = {per_run / hz * 1e3:.3f} ms at {hz:,} Hz" if hz else ""
        lines.append(f"ticks per inference {per_run:,.0f}{timing}")
    if "stack_bytes" in result:
        lines.append(f"stack used {result['stack_bytes']:,} B")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m project_api.standalone",
                                     description="Decode what a standalone image printed (read from stdin).")
    parser.add_argument("project", type=pathlib.Path, help="the generated project (its model.tar names the outputs)")
    args = parser.parse_args(argv)
    try:
        model = read_mlf(args.project / MLF_FILENAME)
        text = sys.stdin.read()
        result = parse(text, model.outputs)
    except (ProjectGenerationError, ValueError) as err:
        print(f"standalone: error: {err}", file=sys.stderr)
        return 1
    print("\n".join(describe(result, model.outputs)))
    return 0 if result["status"] == 0 else 1  # as the image's own exit status would say


if __name__ == "__main__":
    sys.exit(main())
