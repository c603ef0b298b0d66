"""The kernels' C fixed-point helpers (project_api/compiler/c/mtp_fixed_point.h, built with the host gcc) against
fixed_point.py's line-by-line emulation of gemmlowp / tflite, on edge cases and random values,
and fixed_point.py against values tflite's own functions give."""

import shutil
import subprocess

import numpy as np
import pytest

from project_api.compiler import fixed_point
from project_api.compiler.qnn_micro_kernels import C_DIR


def test_quantize_multiplier_matches_tflite():
    assert fixed_point.quantize_multiplier(0.0) == (0, 0)
    assert fixed_point.quantize_multiplier(0.5) == (1 << 30, 0)
    assert fixed_point.quantize_multiplier(1.0) == (1 << 30, 1)
    assert fixed_point.quantize_multiplier(0.75) == (3 << 29, 0)
    # A fraction that rounds up to 2^31 moves to the next exponent.
    assert fixed_point.quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)


def test_rounding_divide_by_pot_rounds_half_away_from_zero():
    assert [fixed_point.rounding_divide_by_pot(x, 1) for x in (-3, -2, -1, 0, 1, 2, 3)] == [-2, -1, -1, 0, 1, 1, 2]
    assert fixed_point.rounding_divide_by_pot(-5, 2) == -1 and fixed_point.rounding_divide_by_pot(6, 2) == 2


def test_softmax_table_starts_at_one():
    table = fixed_point.softmax_exp_table(1.0, 0.1)
    assert table[0] == fixed_point.INT32_MAX  # exp(0)
    assert all(a >= b for a, b in zip(table, table[1:]))  # exp of ever more negative differences


def host_c_output(tmp_path, source: str) -> str:
    """Build a C test program with the host gcc (strict C99, warnings are errors; the compiler's C
    files on the include path), run it: what it prints."""
    (tmp_path / "t.c").write_text(source)
    built = subprocess.run(["gcc", "-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{C_DIR}",
                            str(tmp_path / "t.c"), "-o", str(tmp_path / "t")], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True).stdout


def _printed_integers(tmp_path, program: str):
    """The integers ``program``, built after the C helpers, prints."""
    source = f'#include <stdint.h>\n#include <stdio.h>\n#include "mtp_fixed_point.h"\n{program}'
    return [int(line) for line in host_c_output(tmp_path, source).split()]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_requantize_equals_the_emulation(tmp_path):
    """mtp_requantize (two roundings, as gemmlowp) and mtp_requantize_right (one 64-bit step)."""
    rng = np.random.default_rng(3)
    accs = np.concatenate([rng.integers(-2**31, 2**31, 3000), rng.integers(-70000, 70000, 3000),
                           [0, 1, -1, 2**31 - 1, -2**31 + 1, 2**30, -2**30]])
    multipliers = rng.integers(1 << 30, 1 << 31, accs.size)
    shifts = rng.integers(-12, 1, accs.size)
    shifts[:50] = rng.integers(1, 4, 50)  # a few left shifts (effective scales above one)
    accs[:50] = rng.integers(-1000, 1000, 50)
    # mtp_requantize_right's compile-time bound: acc * m + 2^30 < 0 exactly below it.
    bounds = [(-(1 << 30) - 1) // int(m) + 1 for m in multipliers]
    rows = ",\n".join(f"{{{a}, {m}, {s}, {b}}}" for a, m, s, b in zip(accs, multipliers, shifts, bounds))
    program = (f"static const int64_t cases[][4] = {{{rows}}};\n"
               "int main(void) {\n"
               "  for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {\n"
               "    int32_t shift = (int32_t)cases[i][2];\n"
               "    printf(\"%ld\\n\", (long)mtp_requantize((int32_t)cases[i][0], (int32_t)cases[i][1],\n"
               "                                             shift > 0 ? shift : 0, shift > 0 ? 0 : -shift));\n"
               "    if (shift < 0) printf(\"%ld\\n\", (long)mtp_requantize_right((int32_t)cases[i][0],\n"
               "        (int32_t)cases[i][1], -shift, (int32_t)cases[i][3]));\n"
               "  }\n  return 0;\n}\n")
    got = _printed_integers(tmp_path, program)
    want = []
    for a, m, s in zip(accs, multipliers, shifts):
        value = fixed_point.multiply_by_quantized_multiplier(int(a), int(m), int(s))
        want += [value, value] if s < 0 else [value]  # mtp_requantize, then mtp_requantize_right
    assert got == want


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_requantize_floor_clamps_like_the_emulation(tmp_path):
    """mtp_requantize_floor skips the negative-value correction: after mtp_clamp with an activation
    minimum at or above the output zero point it must equal the emulation, clamped."""
    from project_api.compiler.qnn_requant import Requant

    rng = np.random.default_rng(5)
    count = 4000
    accs = np.concatenate([rng.integers(-2**31, 2**31, count // 2), rng.integers(-70000, 70000, count // 2 - 6),
                           [0, 1, -1, 2**31 - 1, -2**31 + 1, -2**31]])
    multipliers = rng.integers(1 << 30, 1 << 31, count)
    shifts = rng.integers(-12, 0, count)  # right shifts only
    zero_points = rng.integers(-128, 128, count)
    zero_points[:count // 2] = -128  # the common case: ReLU output with zero point -128
    act_mins = [int(rng.integers(zp, 128)) if i % 3 else int(zp) for i, zp in enumerate(zero_points)]
    act_maxs = [127 if i % 4 else int(rng.integers(lo, 128)) for i, lo in enumerate(act_mins)]
    cases = []
    want = []
    for a, m, s, zp, lo, hi in zip(accs, multipliers, shifts, zero_points, act_mins, act_maxs):
        requant = Requant([int(m)], [int(s)], int(zp), lo, hi)
        assert requant.negatives_clamp
        cases.append(f"{{{a}, {m}, {requant.floor_rounding(0)}, {-s - 1}, {zp}, {lo}, {hi}}}")
        value = fixed_point.multiply_by_quantized_multiplier(int(a), int(m), int(s)) + int(zp)
        want.append(min(max(value, lo), hi))
    program = (f"static const int64_t cases[][7] = {{{','.join(cases)}}};\n"
               "int main(void) {\n"
               "  for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {\n"
               "    const int64_t* c = cases[i];\n"
               "    int32_t y = mtp_requantize_floor((int32_t)c[0], (int32_t)c[1], c[2], (int32_t)c[3]);\n"
               "    printf(\"%ld\\n\", (long)mtp_clamp(y + (int32_t)c[4], (int32_t)c[5], (int32_t)c[6]));\n"
               "  }\n  return 0;\n}\n")
    got = _printed_integers(tmp_path, program)
    assert got == want
