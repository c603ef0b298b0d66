"""A small s_tir schedule for microcontrollers: remove the large intermediates of legalized TIR.

Legalized kernels materialise every step (padded input, dequantized input, the reduction's float
result, each epilogue) in a full-size local buffer. Per kernel:
1. inline every elementwise/injective producer (pad, dequantize, astype) into its consumers;
2. inline every epilogue into its producer where that is not a reduction;
3. move the epilogue of a reduction under the reduction's innermost spatial loop, so the
   reduction's result shrinks to one element;
4. split each reduction's initialisation out of its reduction loops.
Nothing is vectorized or parallelized: the C backend cannot print vectors and MCUs have one core.
A step that does not apply to a block (ScheduleError) is skipped.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx

_REDUCE = 2  # IterVar.CommReduce


def _iter_types(sch, block):
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _is_reduction(sch, block) -> bool:
    return _REDUCE in _iter_types(sch, block)


def _try(action) -> bool:
    try:
        action()
        return True
    except Exception:  # noqa: BLE001 - ScheduleError arrives as various FFI error classes
        return False


def _inline_all(sch, inline, skip_reductions: bool) -> None:
    progress = True
    while progress:
        progress = False
        for block in sch.get_child_blocks(sch.get_sblock("root")):
            if skip_reductions and _is_reduction(sch, block):
                continue
            if _try(lambda: inline(block)):
                progress = True
                break


def schedule_kernel(func: tirx.PrimFunc) -> tirx.PrimFunc:
    sch = s_tir.Schedule(func)
    _inline_all(sch, sch.compute_inline, skip_reductions=True)
    _inline_all(sch, sch.reverse_compute_inline, skip_reductions=True)
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if _is_reduction(sch, block):
            continue
        producers = [p for p in sch.get_producers(block) if _is_reduction(sch, p)]
        if len(producers) != 1:
            continue
        reduction = producers[0]
        n_spatial = _iter_types(sch, reduction).index(_REDUCE)  # iter vars list spatial ones first
        loops = sch.get_loops(reduction)
        if 0 < n_spatial <= len(loops):
            _try(lambda: sch.reverse_compute_at(block, loops[n_spatial - 1], preserve_unit_loops=True))
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        types = _iter_types(sch, block)
        if _REDUCE not in types:
            continue
        loops = sch.get_loops(block)
        first_reduce = types.index(_REDUCE)
        if first_reduce < len(loops):
            _try(lambda: sch.decompose_reduction(block, loops[first_reduce]))
    return sch.mod["main"]


@tvm.transform.module_pass(opt_level=0, name="MicroSchedule")
def schedule_pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Apply ``schedule_kernel`` to every PrimFunc of a Relax module."""
    updates = {}
    for global_var, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            updates[global_var] = schedule_kernel(func)
    for global_var, func in updates.items():
        mod[global_var] = func
    return mod
