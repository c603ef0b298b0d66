"""The C99 the integer kernels call, kept as real files in ``compiler/c/`` and pasted into a model's kernels.

- ``c/mtp_fixed_point.h``: TFLite / gemmlowp fixed-point arithmetic (SRDHM, RoundingDivideByPOT,
  the requantization forms, the activation clamp). C, not TIR expressions: each step reads its
  operand up to three times, and as TIR the trees grow sixfold per nesting level (TVM's simplifier
  took minutes and gigabytes on micro_speech).
- ``c/mtp_micro_kernels.h``: the innermost reductions, int8 dot products over contiguous runs and
  clipped windows. The kernels' loop nests, window clipping and requantization stay TIR; these are
  their tensorized inner loops. On cores with the DSP extension (-mcpu=cortex-m4/m7/m33/m55 make
  the compiler define __ARM_FEATURE_SIMD32) four products take two SMLADs on operands widened by
  SXTB16/SXTAB16 (which also adds the input offset); elsewhere the plain C loop is the path, with
  the same int32 result (the 16-bit lanes hold x + offset in [-255, 255] and w in [-128, 127]).
- ``c/mtp_widened.h``: the micro-kernels of the ``widened`` tuning knobs (qnn_choices.py).

They are fragments of one translation unit, not self-contained headers: they expect <stdint.h>
and <string.h> before them, and mtp_widened.h expects mtp_micro_kernels.h. The archives carry them
byte for byte, so a change to a file is a change to every model's C.
"""

from __future__ import annotations

import re
from pathlib import Path

C_DIR = Path(__file__).resolve().parent / "c"
FIXED_POINT_C = (C_DIR / "mtp_fixed_point.h").read_text()
MICRO_KERNELS_C = (C_DIR / "mtp_micro_kernels.h").read_text()
WIDENED_C = (C_DIR / "mtp_widened.h").read_text()


def with_micro_kernels(kernels_c: str) -> str:
    """The kernels' C source (as ``build_c_kernels`` prints it) with the fixed-point helpers and the
    micro-kernels defined after its #includes, before any kernel; TVM's prototypes of the extern
    ``mtp_*`` functions dropped (they would clash with the static inline definitions)."""
    from ._tvm_c_kernels import C_HEADER

    assert kernels_c.startswith(C_HEADER)
    body = re.sub(r"^int32_t mtp_\w+\([^;{}]*\);\n", "", kernels_c[len(C_HEADER):], flags=re.M)
    # The widened micro-kernels only where a kernel calls them: an untuned model's C is unchanged.
    widened = WIDENED_C if "mtp_widen_s8" in body else ""
    return C_HEADER + "#include <string.h>\n\n" + FIXED_POINT_C + MICRO_KERNELS_C + widened + "\n" + body
