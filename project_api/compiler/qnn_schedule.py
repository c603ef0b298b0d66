"""Schedules for the integer kernels (``qnn_tvmscript.py``, ``qnn_te.py``).

Convolutions and fully connected layers are written loop by loop in TVMScript around the C
micro-kernels: their loop structure is their schedule. Softmax's handful of per-row stages stay
as they are (inlining would only repeat them per element). The remaining TE kernels (add,
pooling, dilated convolutions, copies) get ``schedule.py``'s micro schedule: the zero-point
padding inlined into its consumer, the epilogue moved under the reduction's innermost spatial loop.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from .schedule import schedule_kernel


def schedule(symbol: str, func: tirx.PrimFunc) -> tirx.PrimFunc:
    if symbol.endswith("_softmax") or not isinstance(func.body, s_tir.SBlockRealize):
        return func
    return schedule_kernel(func)
