"""The candidate image: many candidates of one kernel in one firmware, chosen at run time.

A candidate image is an ordinary model (LoweredModel -> MLF), so every template builds, flashes
and runs it through the Project API like any model. Its one input is ``tune_selector``
(int32[1]); its one kernel call is a dispatch function that
  1. fills the layer's activations (arena workspaces) with a fixed pseudo-random pattern: no
     input crosses the link, which on a slow or loaded link is most of a measurement's time;
  2. fills the output with a marker, then runs candidate ``selector`` (each candidate is the
     layer's kernel built with its knobs, under its own symbol); any other selector runs none;
  3. writes an FNV-1a hash of the layer's output to ``tune_checksum`` (int32[1]).
Steps 1 and 3 cost the same instructions whatever the selector, so the timing of selector -1 (no
candidate) removes them exactly; the runner compares each candidate's checksum with the untuned
kernel's (4 bytes over the link instead of the output). The candidates share the constants they
have in common (weights they do not re-layout, the requantization arrays), so one image holds as
many candidates as the flash allows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..compiler import ir
from .runner import SELECTOR_INPUT
from .space import KernelTask

DISPATCH_SYMBOL = "tvmgen_default_tune_dispatch"
OUTPUT_NAME = "tune_output"
CHECKSUM_NAME = "tune_checksum"
_C_TYPES = {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
            "float32": "float"}


def candidate_image(model_path: Path, task: KernelTask, knob_sets: List[dict]) -> Tuple[ir.LoweredModel, str]:
    """The LoweredModel of one task's candidates (in selector order) and its content hash."""
    from ..compiler import frontend, qnn, qnn_choices, qnn_micro_kernels
    from ..compiler._tvm_c_kernels import build_c_kernels
    from ..compiler.qnn_schedule import schedule

    path = Path(model_path)
    model, subgraph, op_names, _, _ = frontend.read_tflite(path, path.read_bytes())
    tensors: Dict[str, ir.Tensor] = {SELECTOR_INPUT: ir.Tensor(SELECTOR_INPUT, (1,), "int32", ir.INPUT)}
    inputs = [SELECTOR_INPUT]
    constants: Dict[str, str] = {}  # content key -> tensor name
    funcs, candidate_args, knobs_by_symbol = {}, [], {}
    activation_names: List[str] = []
    output = None
    for index, knobs in enumerate(knob_sets):
        spec = qnn.lower_layer(model, subgraph, op_names, task.op_index, knobs)
        symbol = f"tvmgen_default_tune{index}_{spec.op_name}"
        args, activations = [], 0
        for item in spec.reads:
            data = getattr(item, "data", item) if not isinstance(item, np.ndarray) else item
            if data is None:  # an activation: filled on the device by the dispatch
                name = f"tune_input{activations}"
                activations += 1
                if name not in tensors:
                    tensors[name] = ir.Tensor(name, tuple(item.shape), "int8", ir.WORKSPACE)
                    activation_names.append(name)
                args.append(name)
                continue
            data = np.ascontiguousarray(data)
            key = f"{data.dtype}{data.shape}" + hashlib.sha256(data.tobytes()).hexdigest()
            if key not in constants:
                constants[key] = f"tune_constant{len(constants)}"
                name = constants[key]
                tensors[name] = ir.Tensor(name, tuple(int(d) for d in data.shape), str(data.dtype), ir.CONSTANT, data)
            args.append(constants[key])
        output = spec.output
        funcs[symbol] = schedule(symbol, spec.func)
        candidate_args.append((symbol, args))
        knobs_by_symbol[symbol] = spec.knobs
    tensors[OUTPUT_NAME] = ir.Tensor(OUTPUT_NAME, tuple(output.shape), "int8", ir.OUTPUT)
    tensors[CHECKSUM_NAME] = ir.Tensor(CHECKSUM_NAME, (1,), "int32", ir.OUTPUT)
    kernels_c, c_kernels = build_c_kernels(funcs)
    kernels_c = qnn_micro_kernels.with_micro_kernels(qnn_choices.apply_c_knobs(kernels_c, knobs_by_symbol))

    # Each candidate's scratch buffers are workspaces of the dispatch call (the arena overlaps them).
    workspaces, calls = [], []
    for symbol, args in candidate_args:
        own = []
        for dtype, count in c_kernels[symbol].workspaces:
            name = f"tune_workspace{len(workspaces)}"
            tensors[name] = ir.Tensor(name, (count,), dtype, ir.WORKSPACE)
            workspaces.append(name)
            own.append(name)
        calls.append((symbol, args + [OUTPUT_NAME] + own))
    written = [OUTPUT_NAME, CHECKSUM_NAME] + activation_names + workspaces
    params = inputs + list(constants.values()) + written
    output_count = tensors[OUTPUT_NAME].count
    lines = ["", "/* The candidate image's dispatch (project_api/tune/image.py): the layer's inputs from a fixed",
             " * pattern, candidate *tune_selector (none for any other value), the output's FNV-1a hash. */",
             f"int32_t {DISPATCH_SYMBOL}(" + ", ".join(f"{_C_TYPES[tensors[p].dtype]}* {p}" for p in params) + ") {",
             "  int32_t status = 0;",
             "  uint32_t hash = 2166136261u;"]
    for number, name in enumerate(activation_names):
        lines += [f"  uint32_t state{number} = {0x9E3779B9 ^ (number * 0x85EBCA6B) & 0xFFFFFFFF}u;",
                  f"  for (int32_t i = 0; i < {tensors[name].count}; ++i) {{",
                  f"    state{number} = state{number} * 1664525u + 1013904223u;",
                  f"    {name}[i] = (int8_t)((int32_t)(state{number} >> 24) - 128);",
                  "  }"]
    lines += [f"  for (int32_t i = 0; i < {output_count}; ++i) {{",
              f"    {OUTPUT_NAME}[i] = (int8_t)0x5A; /* a candidate that skips an output shows */", "  }",
              "  switch (tune_selector[0]) {"]
    for index, (symbol, args) in enumerate(calls):
        lines.append(f"    case {index}: status = {symbol}({', '.join(args)}); break;")
    lines += ["    default: break; /* no candidate: the timing baseline */", "  }",
              f"  for (int32_t i = 0; i < {output_count}; ++i) {{",
              f"    hash = (hash ^ (uint32_t)(uint8_t){OUTPUT_NAME}[i]) * 16777619u;", "  }",
              f"  {CHECKSUM_NAME}[0] = (int32_t)hash;", "  return status;", "}", ""]
    kernels_c += "\n".join(lines)
    call = ir.KernelCall(DISPATCH_SYMBOL, params, written)
    lowered = ir.LoweredModel(name="default", tensors=tensors, inputs=inputs, outputs=[OUTPUT_NAME, CHECKSUM_NAME],
                              calls=[call],
                              kernels_c=kernels_c, source_text=f"// candidate image of {task.signature}\n",
                              notes=[f"tuning candidates: {json.dumps(knob_sets)}"])
    digest = hashlib.sha256(kernels_c.encode())
    for name in params:
        tensor = tensors[name]
        digest.update(f"{name}{tensor.shape}{tensor.dtype}{tensor.kind}".encode())
        if tensor.data is not None:
            digest.update(tensor.data.tobytes())
    return lowered, digest.hexdigest()[:20]


