"""Group each quantized operator into one kernel, so that tensors between kernels stay integer.

Imported int8 models compute in float: ``dequantize -> float op -> quantize`` per operator.
TVM's default fusion cuts such chains where it likes, so float32 (4x larger) tensors travel
between kernels, and FoldConstant turns ``dequantize(int8 weights)`` into float32 constants.

Before legalization, every binding that turns float values into an integer tensor (a
``quantize``, or an ``astype`` to an integer type) becomes the end of one group; the group holds
every float value that binding depends on, back to integer tensors, model inputs and constants,
plus the ``clip`` that applies a fused activation to the integer result; it takes at most one
heavy (non-elementwise) op. Each group is outlined into a ``Primitive`` Relax function whose
weights are parameters, so FoldConstant cannot widen them and FuseTIR turns the group into one
PrimFunc. A float value feeding several groups (a dequantized
residual) is recomputed in each: dequantize is cheap, a float tensor in RAM is not.
Float models have no such bindings and keep TVM's default fusion.
"""

from __future__ import annotations

from typing import Dict, List

import tvm
from tvm import relax

# Values computed inside a group: floats, and the bools of comparisons between them.
_FLOAT_DTYPES = ("float16", "float32", "float64", "bool")


def _dtype(expr) -> str:
    ty = getattr(expr, "ty", None)
    return getattr(ty, "dtype", "") or ""


def _is_scalar_const(expr) -> bool:
    return isinstance(expr, tvm.ir.GenericConst) and expr.ty.ndim == 0


def _operands(expr) -> List:
    """Vars and non-scalar constants an expression reads, in order, without duplicates."""
    found: List = []

    def visit(node):
        if isinstance(node, relax.Var) or (isinstance(node, tvm.ir.GenericConst) and not _is_scalar_const(node)):
            if not any(node.same_as(other) for other in found):
                found.append(node)
        elif isinstance(node, relax.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, relax.Tuple):
            for field in node.fields:
                visit(field)
        elif isinstance(node, relax.TupleGetItem):
            visit(node.tuple_value)

    visit(expr)
    return found


def _substitute(expr, mapping: Dict):
    if isinstance(expr, (relax.Var, tvm.ir.GenericConst)):
        for old, new in mapping.items():
            if expr.same_as(old):
                return new
        return expr
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [_substitute(arg, mapping) for arg in expr.args], expr.attrs, expr.ty_args)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([_substitute(field, mapping) for field in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(_substitute(expr.tuple_value, mapping), expr.index)
    return expr


def _op_name(binding) -> str:
    value = binding.value
    if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
        return value.op.name.split(".")[-1]
    return "op"


# Elementwise and layout ops: any number of them may join a group. Any other op (conv, matmul,
# pooling, softmax, reductions ...) is "heavy": a group takes at most one, so a float network that
# ends in a quantize is not fused into one giant kernel whose intermediates all live at once.
_CHEAP_OPS = frozenset(
    "dequantize quantize astype add subtract multiply divide clip maximum minimum where greater greater_equal "
    "less less_equal equal not_equal floor ceil round negative abs exp log tanh sigmoid sqrt rsqrt power erf "
    "relu relu6 leakyrelu gelu silu reshape permute_dims expand_dims squeeze flatten".split()
)
_PLUMBING_OPS = ("dequantize", "quantize", "astype", "clip", "add", "permute_dims", "reshape")


def _anchor_name(group) -> str:
    """The op that names a group's kernel: its first one that is not (de)quantization plumbing."""
    return next((_op_name(b) for b in group if _op_name(b) not in _PLUMBING_OPS), _op_name(group[-1]))


def outline_quantized_groups(mod: tvm.IRModule) -> tvm.IRModule:
    main = mod["main"]
    blocks = main.body.blocks
    if len(blocks) != 1 or not isinstance(blocks[0], relax.DataflowBlock):
        return mod
    bindings = list(blocks[0].bindings)
    bound = {}
    uses: Dict = {}
    for binding in bindings:
        bound[binding.var] = binding
        for operand in _operands(binding.value):
            if isinstance(operand, relax.Var):
                uses[operand] = uses.get(operand, 0) + 1
    for operand in _operands(main.body.body):
        if isinstance(operand, relax.Var):
            uses[operand] = uses.get(operand, 0) + 1

    def is_float_binding(var) -> bool:
        return var in bound and _dtype(var) in _FLOAT_DTYPES

    def ends_group(binding) -> bool:
        if _dtype(binding.var) in _FLOAT_DTYPES or not _dtype(binding.var):
            return False
        return any(isinstance(v, relax.Var) and is_float_binding(v) for v in _operands(binding.value))

    position = {binding.var: index for index, binding in enumerate(bindings)}
    absorbed = set()
    replacement = {}  # var of a group's last binding -> (group bindings in order)
    for binding in bindings:
        if binding.var in absorbed or not ends_group(binding):
            continue
        members = {}
        heavy = []

        def collect(var):
            if var in members or not is_float_binding(var):
                return
            if _op_name(bound[var]) not in _CHEAP_OPS:
                if heavy:
                    return  # a second heavy op keeps its own kernel; its result becomes an operand
                heavy.append(var)
            members[var] = bound[var]
            for operand in _operands(bound[var].value):
                if isinstance(operand, relax.Var):
                    collect(operand)

        for operand in _operands(binding.value):
            if isinstance(operand, relax.Var):
                collect(operand)
        group = sorted(members.values(), key=lambda b: position[b.var]) + [binding]
        # The fused activation: a clip of the integer result that nothing else reads.
        last = binding
        while uses.get(last.var, 0) == 1:
            consumer = next(
                (b for b in bindings[position[last.var] + 1 :] if any(last.var.same_as(v) for v in _operands(b.value))),
                None,
            )
            if consumer is None or _op_name(consumer) != "clip":
                break
            group.append(consumer)
            absorbed.add(consumer.var)
            last = consumer
        replacement[last.var] = group

    if not replacement:
        return mod

    builder = relax.BlockBuilder(mod)
    calls = {}
    for index, (out_var, group) in enumerate(replacement.items()):
        inside = [b.var for b in group]
        leaves = []
        for b in group:
            for operand in _operands(b.value):
                if any(operand.same_as(v) for v in inside) or any(operand.same_as(v) for v in leaves):
                    continue
                leaves.append(operand)
        params = [relax.Var(f"p{i}", leaf.ty) for i, leaf in enumerate(leaves)]
        mapping = dict(zip(leaves, params))
        name = f"fused_q{index}_{_anchor_name(group)}"
        with builder.function(name, params, attrs={"Primitive": True}, private=True):
            with builder.dataflow():
                for b in group:
                    mapping[b.var] = builder.emit(_substitute(b.value, mapping))
                result = builder.emit_output(mapping[group[-1].var])
            builder.emit_func_output(result)
        calls[out_var] = (builder.get().get_global_var(name), leaves)

    new_bindings = []
    for binding in bindings:
        if binding.var in calls:
            global_var, leaves = calls[binding.var]
            call = builder.normalize(relax.Call(global_var, leaves))
            new_bindings.append(relax.VarBinding(binding.var, call))
        else:
            new_bindings.append(binding)
    body = relax.SeqExpr([relax.DataflowBlock(new_bindings)], main.body.body)
    new_main = relax.Function(main.params, body, main.ret_ty, main.is_pure, main.attrs)
    out = builder.get()
    out["main"] = new_main
    return relax.transform.DeadCodeElimination(["main"])(out)
