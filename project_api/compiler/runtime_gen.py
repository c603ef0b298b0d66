"""THE static-runtime generator: LoweredModel (+ arena plan) -> the C files of an MLF.

Emits, for model NAME with c = naming.c_identifier(NAME):
  include/tvmgen_<c>.h   the legacy AOT ``interface-api=c`` header (docs/architecture.md, contract 2)
  src/<c>_kernels.c      lowering's plain-C kernels, unchanged
  src/<c>_runtime.c      the weights as typed ``static const`` arrays, the static arena and
                         ``tvmgen_<c>_run``, which calls each kernel in order
The generated C is C99, needs no TVM runtime, no malloc and no JSON, and builds warning-free under
``-Wall -Wextra -Werror`` with gcc and arm-none-eabi-gcc. Every path that produces C for a model
(MLF export, the native runner, project generation) goes through ``generate_runtime``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional

import numpy as np

from ..naming import c_identifier, c_member_name
from .errors import CompileError
from .ir import CONSTANT, INPUT, INTERMEDIATE, KINDS, OUTPUT, STATE, WORKSPACE, LoweredModel
from .planner import Plan, plan_model

GENERATOR_VERSION = "1"

# numpy dtype name -> the C type of a pointer to its elements (contract 1: ``T* a``).
C_TYPES = {
    "float32": "float",
    "float64": "double",
    "float16": "uint16_t",  # raw IEEE half bits: C99 has no half type
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "uint8": "uint8_t",
    "uint16": "uint16_t",
    "uint32": "uint32_t",
    "uint64": "uint64_t",
    "bool": "int8_t",  # stored as one byte 0/1, as TVM stores bool buffers
}

_VALUES_PER_LINE = 16


@dataclasses.dataclass
class GeneratedRuntime:
    c_name: str  # c_identifier(model name)
    header_name: str  # "tvmgen_<c>.h"
    header: str
    sources: Dict[str, str]  # file name -> C text ("<c>_kernels.c", "<c>_runtime.c")
    plan: Plan

    def write(self, include_dir, src_dir) -> None:
        """Write the header into ``include_dir`` and the sources into ``src_dir``."""
        from pathlib import Path

        include_dir, src_dir = Path(include_dir), Path(src_dir)
        include_dir.mkdir(parents=True, exist_ok=True)
        src_dir.mkdir(parents=True, exist_ok=True)
        (include_dir / self.header_name).write_text(self.header)
        for name, text in self.sources.items():
            (src_dir / name).write_text(text)


def c_type(dtype: str) -> str:
    try:
        return C_TYPES[dtype]
    except KeyError:
        raise CompileError(f"dtype {dtype!r} has no C type in the static runtime; supported: {', '.join(C_TYPES)}")


def size_macro(c_name: str, tensor_name: str) -> str:
    return f"TVMGEN_{c_name.upper()}_{c_identifier(tensor_name).upper()}_SIZE"


def workspace_macro(c_name: str) -> str:
    return f"TVMGEN_{c_name.upper()}_WORKSPACE_SIZE"


def num_calls_macro(c_name: str) -> str:
    return f"TVMGEN_{c_name.upper()}_NUM_CALLS"


def call_ticks_symbol(c_name: str) -> str:
    return f"tvmgen_{c_name}_call_ticks"
def state_macro(c_name: str) -> str:
    return f"TVMGEN_{c_name.upper()}_STATE_SIZE"


def state_bytes(model: LoweredModel) -> int:
    """Bytes of the variables that persist across invocations (outside the arena)."""
    return sum(t.nbytes for t in model.tensors.values() if t.kind == STATE)


def validate(model: LoweredModel) -> None:
    """Refuse a LoweredModel the generator cannot turn into correct C, with a one-line reason."""
    if not model.inputs:
        raise CompileError(f"model {model.name!r} has no inputs; the C interface needs at least one")
    if not model.outputs:
        raise CompileError(f"model {model.name!r} has no outputs")
    for name, tensor in model.tensors.items():
        if tensor.kind not in KINDS:
            raise CompileError(f"tensor {name!r} has unknown kind {tensor.kind!r}")
        c_type(tensor.dtype)
        if tensor.kind == CONSTANT:
            if tensor.data is None:
                raise CompileError(f"constant {name!r} has no data")
            if tuple(tensor.data.shape) != tuple(tensor.shape) or str(tensor.data.dtype) != tensor.dtype:
                raise CompileError(
                    f"constant {name!r}: data is {tensor.data.dtype}{list(tensor.data.shape)}, "
                    f"declared {tensor.dtype}{list(tensor.shape)}"
                )
    for group, kind in ((model.inputs, INPUT), (model.outputs, OUTPUT)):
        for name in group:
            if name not in model.tensors or model.tensors[name].kind != kind:
                raise CompileError(f"model {kind} {name!r} is not a tensor of kind {kind!r}")
    # Struct members and size macros must be distinct after sanitizing ("a:0" and "a_0" clash).
    seen: Dict[str, str] = {"WORKSPACE": "(the workspace size macro)", "STATE": "(the state size macro)"}
    for name in model.inputs + model.outputs:
        key = c_identifier(name).upper()
        if key in seen:
            raise CompileError(
                f"tensor names {seen[key]!r} and {name!r} give the same C name {c_identifier(name)!r}; rename one"
            )
        seen[key] = name
    signatures: Dict[str, List[str]] = {}
    for index, call in enumerate(model.calls):
        if c_identifier(call.func_name) != call.func_name:
            raise CompileError(f"call {index}: kernel name {call.func_name!r} is not a C identifier")
        for arg in call.args:
            if arg not in model.tensors:
                raise CompileError(f"call {index} ({call.func_name}) uses unknown tensor {arg!r}")
        types = [c_type(model.tensors[a].dtype) for a in call.args]
        if signatures.setdefault(call.func_name, types) != types:
            raise CompileError(f"kernel {call.func_name} is called with different argument types")
    written = set()
    for index, call in enumerate(model.calls):
        for arg in call.args:
            if arg not in call.writes and model.tensors[arg].kind in (INTERMEDIATE, OUTPUT) and arg not in written:
                raise CompileError(f"call {index} ({call.func_name}) reads {arg!r} before any call writes it")
        for arg in call.writes:
            if model.tensors[arg].kind in (INPUT, CONSTANT):
                raise CompileError(f"call {index} ({call.func_name}) writes {model.tensors[arg].kind} {arg!r}")
        written.update(call.writes)
    for name in model.outputs:
        if name not in written:
            raise CompileError(f"model output {name!r} is written by no kernel call")


def _int_literal(value: int, dtype: str) -> str:
    if dtype in ("int64", "uint64"):
        if dtype == "int64" and value == -(2**63):
            return "(-INT64_C(9223372036854775807) - 1)"
        return f"{'INT64_C' if dtype == 'int64' else 'UINT64_C'}({value})"
    if dtype == "int32" and value == -(2**31):
        return "(-2147483647 - 1)"
    if dtype == "uint32":
        return f"{value}u"
    return str(value)


def _float_literal(value: float, suffix: str) -> str:
    # Hexadecimal floating constants (C99) are exact: no decimal round trip.
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    mantissa, exponent = float.hex(value).split("p")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}p{exponent}{suffix}"


def c_literals(data: np.ndarray, dtype: str) -> List[str]:
    flat = np.ascontiguousarray(data).reshape(-1)
    if dtype == "float32":
        return [_float_literal(v, "f") for v in flat.astype(np.float64).tolist()]
    if dtype == "float64":
        return [_float_literal(v, "") for v in flat.tolist()]
    if dtype == "float16":
        flat = flat.view(np.uint16)
        dtype = "uint16"
    if dtype == "bool":
        flat = flat.astype(np.int8)
    return [_int_literal(int(v), dtype) for v in flat.tolist()]


def _array_initializer(literals: List[str]) -> str:
    lines = []
    for start in range(0, len(literals), _VALUES_PER_LINE):
        lines.append("  " + ", ".join(literals[start : start + _VALUES_PER_LINE]) + ",")
    return "\n".join(lines)


def _comment(text: str) -> str:
    return text.replace("*/", "* /").replace("/*", "/ *")


def generate_header(model: LoweredModel, plan: Plan) -> str:
    c = c_identifier(model.name)
    guard = f"TVMGEN_{c.upper()}_H_"
    lines = [
        f"/* Generated by microtvm-projects (static runtime v{GENERATOR_VERSION}) for model "
        f"{_comment(model.name)!r}. Do not edit. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
    ]
    for name in model.inputs + model.outputs:
        tensor = model.tensors[name]
        lines.append(f"/* {_comment(name)}: {tensor.dtype}{list(tensor.shape)} */")
        lines.append(f"#define {size_macro(c, name)} {tensor.nbytes}")
    lines.append("/* the static arena inside the generated runtime */")
    lines.append(f"#define {workspace_macro(c)} {plan.arena_size}")
    lines.append("/* kernel calls per run: the entries of the profiling build's tick table */")
    lines.append(f"#define {num_calls_macro(c)} {len(model.calls)}")
    lines.append("/* variables that persist across runs (e.g. SVDF's state), outside the arena */")
    lines.append(f"#define {state_macro(c)} {state_bytes(model)}")
    lines.append("")
    for struct, names in (("inputs", model.inputs), ("outputs", model.outputs)):
        lines.append(f"struct tvmgen_{c}_{struct} {{")
        lines.extend(f"  void* {c_member_name(name)};" for name in names)
        lines.append("};")
        lines.append("")
    lines += [
        "/* Runs the model on caller-owned buffers; returns 0, or the failing kernel's non-zero status. */",
        f"int32_t tvmgen_{c}_run(struct tvmgen_{c}_inputs* inputs, struct tvmgen_{c}_outputs* outputs);",
        "",
        "#ifdef TVMGEN_PROFILE",
        "/* Profiling build (-DTVMGEN_PROFILE): the run function adds the timer ticks each kernel call took",
        " * to its entry (call order); the application provides the timer and zeroes the table. */",
        f"extern uint64_t {call_ticks_symbol(c)}[{max(len(model.calls), 1)}];",
        "uint64_t tvmgen_profile_ticks(void);",
        "#endif",
        "/* Zeroes the state (a fresh start, as at power-up: a stateful model such as one with SVDF",
        " * otherwise carries its history from run to run). Nothing to do for a stateless model. */",
        f"void tvmgen_{c}_reset(void);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def generate_runtime_source(model: LoweredModel, plan: Plan) -> str:
    c = c_identifier(model.name)
    tensors = model.tensors
    offsets = plan.offsets
    needs_math = any(
        t.kind == CONSTANT and t.dtype in ("float32", "float64") and not np.all(np.isfinite(t.data))
        for t in tensors.values()
    )
    align = f"TVMGEN_{c.upper()}_ALIGN16"
    lines = [
        f"/* Generated by microtvm-projects (static runtime v{GENERATOR_VERSION}) for model "
        f"{_comment(model.name)!r}. Do not edit.",
        " * The weights, the static arena and the function that runs the kernels in order. */",
        "#include <stdint.h>",
    ]
    if needs_math:
        lines.append("#include <math.h>")
    lines += [
        "",
        f'#include "tvmgen_{c}.h"',
        "",
        "/* C99 has no alignas; GCC and clang accept an attribute. Without it the arena still gets the",
        " * strictest scalar alignment from its union, which is all the kernels rely on. */",
        "#if defined(__GNUC__)",
        f"#define {align} __attribute__((aligned(16)))",
        "#else",
        f"#define {align}",
        "#endif",
        "",
    ]
    # Kernel prototypes (contract 1: int32_t f(T0* a0, T1* a1, ...)).
    declared = set()
    for call in model.calls:
        if call.func_name in declared:
            continue
        declared.add(call.func_name)
        params = ", ".join(f"{c_type(tensors[a].dtype)}* a{i}" for i, a in enumerate(call.args)) or "void"
        lines.append(f"int32_t {call.func_name}({params});")
    lines.append("")

    const_symbols: Dict[str, Optional[str]] = {}
    const_index = 0
    for name, tensor in tensors.items():
        if tensor.kind != CONSTANT:
            continue
        if not any(name in call.args for call in model.calls):
            continue
        count = tensor.count
        if count == 0:
            const_symbols[name] = None  # C has no empty arrays; the kernel gets a null pointer
            continue
        symbol = f"tvmgen_{c}_const{const_index}"
        const_index += 1
        const_symbols[name] = symbol
        lines.append(f"/* {_comment(name)}: {tensor.dtype}{list(tensor.shape)} */")
        lines.append(f"static const {c_type(tensor.dtype)} {symbol}[{count}] {align} = {{")
        lines.append(_array_initializer(c_literals(tensor.data, tensor.dtype)))
        lines.append("};")
        lines.append("")

    arena = f"tvmgen_{c}_arena"
    if plan.arena_size > 0:
        lines += [
            f"/* {plan.arena_size} bytes for every intermediate and workspace tensor (offsets below). */",
            "static union {",
            f"  uint8_t bytes[{plan.arena_size}];",
            "  double align_double;",
            "  uint64_t align_u64;",
            "  void* align_pointer;",
            f"}} {arena} {align};",
            "",
        ]

    states = [name for name, t in tensors.items() if t.kind == STATE]
    state_symbols = {name: f"tvmgen_{c}_state{k}" for k, name in enumerate(states)}
    for name in states:
        tensor = tensors[name]
        lines.append(f"/* {_comment(name)}: {tensor.dtype}{list(tensor.shape)}, kept across runs */")
        lines.append(f"static {c_type(tensor.dtype)} {state_symbols[name]}[{tensor.count}] {align};")
    lines.append(f"void tvmgen_{c}_reset(void) {{")
    for name in states:
        lines.append(f"  for (uint32_t i = 0; i < {tensors[name].count}u; ++i) {state_symbols[name]}[i] = 0;")
    lines += ["}", ""]

    def pointer(name: str) -> str:
        tensor = tensors[name]
        ctype = c_type(tensor.dtype)
        if tensor.kind == INPUT:
            return f"({ctype}*)inputs->{c_member_name(name)}"
        if tensor.kind == OUTPUT:
            return f"({ctype}*)outputs->{c_member_name(name)}"
        if tensor.kind == CONSTANT:
            symbol = const_symbols[name]
            return f"({ctype}*)0" if symbol is None else f"({ctype}*){symbol}"  # kernels only read constants
        if tensor.kind == STATE:
            return f"{state_symbols[name]}"
        assert tensor.kind in (INTERMEDIATE, WORKSPACE)
        return f"({ctype}*)(void*)({arena}.bytes + {offsets[name]})"

    # Each call goes through one macro: a plain assignment, or bracketed by two timer reads in the
    # profiling build, so the default build is exactly the unprofiled code.
    call_macro = f"TVMGEN_{c.upper()}_CALL"
    ticks = call_ticks_symbol(c)
    lines += [
        "#ifdef TVMGEN_PROFILE",
        f"uint64_t {ticks}[{max(len(model.calls), 1)}];",
        f"#define {call_macro}(index, call) do {{ \\",
        "    uint64_t start_ = tvmgen_profile_ticks(); \\",
        "    status = (call); \\",
        f"    {ticks}[index] += tvmgen_profile_ticks() - start_; \\",
        "  } while (0)",
        "#else",
        f"#define {call_macro}(index, call) (status = (call))",
        "#endif",
        "",
        f"int32_t tvmgen_{c}_run(struct tvmgen_{c}_inputs* inputs, struct tvmgen_{c}_outputs* outputs) {{",
        "  int32_t status;",
        "  (void)inputs;",
        "  (void)outputs;",
    ]
    for index, call in enumerate(model.calls):
        args = ",\n      ".join(pointer(a) for a in call.args)
        lines.append(f"  /* call {index} */")
        lines.append(f"  {call_macro}({index}, {call.func_name}({args}));")
        lines.append("  if (status != 0) return status;")
    lines += ["  (void)status;", "  return 0;", "}", ""]
    return "\n".join(lines)


def generate_runtime(model: LoweredModel, plan: Optional[Plan] = None) -> GeneratedRuntime:
    """The header and C sources of ``model``'s static runtime (the arena planned if no plan given)."""
    validate(model)
    if plan is None:
        plan = plan_model(model)
    c = c_identifier(model.name)
    kernels = (
        f"/* Kernels of model {_comment(model.name)!r}, generated by TVM through microtvm-projects. */\n"
        + model.kernels_c
    )
    if not kernels.endswith("\n"):
        kernels += "\n"
    return GeneratedRuntime(
        c_name=c,
        header_name=f"tvmgen_{c}.h",
        header=generate_header(model, plan),
        sources={f"{c}_kernels.c": kernels, f"{c}_runtime.c": generate_runtime_source(model, plan)},
        plan=plan,
    )
