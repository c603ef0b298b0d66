"""Turn scheduled TIR kernels into plain C99 functions ("unpacked" ABI) with TVM's C backend.

TVM 0.27 only emits packed functions by default. A PrimFunc with a ``global_symbol`` and
``calling_conv`` 1 is skipped by MakePackedAPI and keeps a plain signature, provided its buffer
parameters were first turned into data pointers bound by DeclBuffer. Local buffers of 1 KiB or
more crash LowerTVMBuiltin in such functions, so they become extra (workspace) parameters the
caller places in the arena. The printed C includes TVM headers and a library context that plain
kernels never use; they are stripped so the result needs only <stdint.h>, <stdbool.h> and <math.h>.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Dict, List, Tuple

import tvm
from tvm import s_tir, tirx

from ..naming import c_identifier
from .errors import CompileError

C_HEADER = "#include <stdint.h>\n#include <stdbool.h>\n#include <math.h>\n\n"
STACK_LIMIT_BYTES = 1024  # local buffers this large or larger become workspace parameters


@dataclasses.dataclass
class CKernel:
    symbol: str
    workspaces: List[Tuple[str, int]]  # (dtype, element count), appended after the parameters


def _lowering_passes():
    # The CPU subset of TVM's s_tir pipeline, up to (not including) the packed-API passes.
    return [
        s_tir.transform.CanonicalizeLoop(),
        s_tir.transform.LowerInitBlock(),
        s_tir.transform.PlanAndUpdateBufferAllocationLocation(),
        s_tir.transform.ConvertBlocksToOpaque(),
        s_tir.transform.CompactBufferAllocation(),
        s_tir.transform.LowerMatchBuffer(),
        s_tir.transform.StmtSimplify(),
        s_tir.transform.LowerOpaqueBlock(),
        tirx.transform.FlattenBuffer(),
        tirx.transform.NarrowDataType(32),
        tirx.transform.StmtSimplify(),
        tirx.transform.RemoveNoOp(),
    ]


def _finalize_passes():
    return [
        tirx.transform.StorageRewrite(),
        tirx.transform.StmtSimplify(),
        tirx.transform.RemoveNoOp(),
        tirx.transform.VerifyMemory(),
        tirx.transform.AnnotateEntryFunc(),
        tirx.transform.SplitHostDevice(),
        tirx.transform.MakePackedAPI(),
        tirx.transform.LowerTVMBuiltin(),
        tirx.transform.LowerIntrin(),
    ]


def _nbytes(buffer) -> int:
    count = 1
    for dim in buffer.shape:
        if not isinstance(dim, (int, tvm.tirx.IntImm)):
            return 0
        count *= int(dim)
    return count * tvm.DataType(str(buffer.dtype)).bits // 8


def _hoist_large_allocations(stmt, workspaces: List, params: List):
    """Replace AllocBuffers of >= STACK_LIMIT_BYTES by DeclBuffers over new (workspace) params.

    An allocation inside a loop lives for one iteration; hoisting it to a parameter keeps the
    meaning (the loop body initialises it before use) and gives it one arena slot."""
    recurse = lambda s: _hoist_large_allocations(s, workspaces, params)  # noqa: E731
    if isinstance(stmt, tirx.SeqStmt):
        return tirx.SeqStmt([recurse(s) for s in stmt.seq])
    if isinstance(stmt, tirx.For):
        return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, recurse(stmt.body),
                        stmt.thread_binding, stmt.annotations, stmt.step)
    if isinstance(stmt, tirx.IfThenElse):
        return tirx.IfThenElse(stmt.condition, recurse(stmt.then_case),
                               recurse(stmt.else_case) if stmt.else_case is not None else None)
    if isinstance(stmt, tirx.AllocBuffer) and _nbytes(stmt.buffer) >= STACK_LIMIT_BYTES:
        buffer = stmt.buffer
        pointer = tirx.Var(f"workspace_{len(workspaces)}", tirx.buffer_data_pointer_type(buffer))
        params.append(pointer)
        workspaces.append((str(buffer.dtype), _nbytes(buffer) * 8 // tvm.DataType(str(buffer.dtype)).bits))
        return tirx.DeclBuffer(buffer, data=pointer)
    return stmt


_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int "
    "long register restrict return short signed sizeof static struct switch typedef union unsigned void "
    "volatile while _Bool _Complex _Imaginary bool".split()
)


def _c_parameter_name(name: str) -> str:
    identifier = c_identifier(name or "arg")
    return identifier + "_" if identifier in _C_KEYWORDS else identifier


def _to_unpacked(symbol: str, func: tirx.PrimFunc) -> Tuple[tirx.PrimFunc, CKernel]:
    params, decls = [], []
    for param in func.params:
        if not tirx.is_buffer_var(param):
            raise CompileError(f"kernel {symbol}: scalar parameter '{param}' is not supported (dynamic shapes?)")
        # TVM prints a parameter under its tensor's name, which may be no C identifier ("in:0/x").
        pointer = tirx.Var(_c_parameter_name(param.name), tirx.buffer_data_pointer_type(param))
        params.append(pointer)
        decls.append(tirx.DeclBuffer(param, data=pointer))
    workspaces: List = []
    body = _hoist_large_allocations(func.body, workspaces, params)
    new_func = tirx.PrimFunc(params, tirx.SeqStmt(decls + [body]), func.ret_type, func.attrs)
    new_func = new_func.with_attr("global_symbol", symbol).with_attr("calling_conv", 1)
    return new_func, CKernel(symbol, workspaces)


def _fabs_as_select(call):
    value = call.args[0]
    zero = tirx.const(0, str(call.ty))
    return tirx.Select(value < zero, zero - value, value)


_INTRINSICS_REGISTERED = False


def _register_c_intrinsics() -> None:
    """The C backend has no lowering for ``tirx.fabs``: give it one (in this process only)."""
    global _INTRINSICS_REGISTERED
    if not _INTRINSICS_REGISTERED:
        tirx.op.register_intrin_lowering("tirx.fabs", "c", f=_fabs_as_select, level=99)
        _INTRINSICS_REGISTERED = True


_PLACEHOLDER = "__mtp_unused_second_kernel"


def _placeholder_func() -> tirx.PrimFunc:
    # A module with one function gets it treated as the entry function; a second one avoids that.
    buffer = tirx.decl_buffer((1,), "int8", name="unused")
    pointer = tirx.Var("unused_ptr", tirx.buffer_data_pointer_type(buffer))
    body = tirx.SeqStmt([tirx.DeclBuffer(buffer, data=pointer), tirx.BufferStore(buffer, tirx.const(0, "int8"), [0])])
    return tirx.PrimFunc([pointer], body).with_attr("global_symbol", _PLACEHOLDER).with_attr("calling_conv", 1)


def build_c_kernels(funcs: Dict[str, tirx.PrimFunc]) -> Tuple[str, Dict[str, CKernel]]:
    """``funcs``: C symbol -> scheduled PrimFunc. Returns the C source and each kernel's ABI."""
    if not funcs:
        return C_HEADER, {}
    _register_c_intrinsics()
    target = tvm.target.Target("c")
    mod = tvm.IRModule({tvm.ir.GlobalVar(symbol): func for symbol, func in funcs.items()})
    mod = tirx.transform.BindTarget(target.with_host(target))(mod)
    kernels: Dict[str, CKernel] = {}
    with tvm.transform.PassContext(opt_level=3, config={"tirx.disable_vectorize": True}):
        mod = tvm.transform.Sequential(_lowering_passes())(mod)
        unpacked = {}
        for global_var, func in mod.functions.items():
            new_func, kernel = _to_unpacked(global_var.name_hint, func)
            unpacked[tvm.ir.GlobalVar(global_var.name_hint)] = new_func
            kernels[global_var.name_hint] = kernel
        if len(unpacked) == 1:
            unpacked[tvm.ir.GlobalVar(_PLACEHOLDER)] = _placeholder_func()
        mod = tirx.transform.BindTarget(target.with_host(target))(tvm.IRModule(unpacked))
        mod = tvm.transform.Sequential(_finalize_passes())(mod)
        source = tvm.get_global_func("target.build.c")(mod, target).inspect_source()
    return _clean_source(source, list(kernels)), kernels


def _clean_source(source: str, symbols: List[str]) -> str:
    """Strip TVM's headers and library context; make each kernel ``int32_t`` returning 0."""
    source = re.sub(r'#include "[^"]*"\n', "", source)
    source = re.sub(r"#include <[^>]*>\n", "", source)
    source = re.sub(r"void\* __tvm_ffi__library_ctx = NULL;\n", "", source)
    source = re.sub(r'#ifdef __cplusplus\nextern "C"\n#endif\n', "", source)
    source = source.replace("TVM_DLL ", "")
    source = source.replace("#define TVM_EXPORTS\n", "")
    source = re.sub(r"// tvm target: .*\n", "", source)
    source = _drop_repeated_declarations(source)
    source = _drop_function(source, _PLACEHOLDER)
    for symbol in symbols:
        source = source.replace(f"void {symbol}(", f"int32_t {symbol}(")
        source = _return_zero(source, symbol)
    return C_HEADER + source.strip() + "\n"


def _drop_repeated_declarations(source: str) -> str:
    """TVM declares a libm function (nearbyintf, expf) once per kernel that uses it."""
    seen, lines = set(), []
    for line in source.split("\n"):
        if re.fullmatch(r"\w[\w ]*\w\([^(){};]*\);", line):
            if line in seen:
                continue
            seen.add(line)
        lines.append(line)
    return "\n".join(lines)


def _definition_span(source: str, symbol: str):
    match = re.search(rf"^\w[\w ]*\b{re.escape(symbol)}\([^;{{]*\)\s*\{{\n", source, flags=re.M)
    if match is None:
        return None
    end = source.index("\n}\n", match.end())  # TVM prints a definition's closing brace in column 0
    return match.start(), end, end + 3


def _return_zero(source: str, symbol: str) -> str:
    span = _definition_span(source, symbol)
    if span is None:
        raise CompileError(f"internal error: the C backend printed no definition for kernel {symbol}")
    _, end, _ = span
    return source[:end] + "\n  return 0;" + source[end:]


def _drop_function(source: str, symbol: str) -> str:
    source = re.sub(rf"^.*\b{re.escape(symbol)}\([^;{{]*\);\n", "", source, flags=re.M)
    span = _definition_span(source, symbol)
    if span is not None:
        start, _, after = span
        source = source[:start] + source[after:]
    return source
