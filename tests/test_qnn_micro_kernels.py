"""The C micro-kernels of the integer path (project_api/compiler/c/*.h): each file compiles as strict,
warning-free C99 for the host and for Cortex-M cores with and without the DSP extension; against
numpy (host gcc, portable path), the window gather of conv2d_gathered at every border, with one and
several channels."""

import shutil
import subprocess

import numpy as np
import pytest

from project_api.compiler.qnn_micro_kernels import C_DIR
from test_fixed_point import host_c_output

# What a model's kernels put before the files (qnn_micro_kernels.with_micro_kernels), in their order.
_PRELUDE = "#include <stdint.h>\n#include <string.h>\n"
_FILES = ["mtp_fixed_point.h", "mtp_micro_kernels.h", "mtp_widened.h"]
_COMPILERS = [
    ["gcc"],
    ["clang"],
    # The DSP path (__ARM_FEATURE_SIMD32, SSAT), SSAT without SIMD, and neither.
    *(["arm-none-eabi-gcc", "-mthumb", f"-mcpu={cpu}"] for cpu in ("cortex-m4", "cortex-m7", "cortex-m33",
                                                                  "cortex-m55", "cortex-m3", "cortex-m0")),
]


@pytest.mark.parametrize("compiler", _COMPILERS, ids=lambda argv: argv[-1].replace("-mcpu=", "arm-"))
@pytest.mark.parametrize("level", ["-Os", "-O2"])
def test_c_files_are_strict_warning_free_c99(compiler, level, tmp_path):
    """Each file, after the ones before it, as one translation unit: -std=c99 -pedantic, warnings
    as errors (the archives carry these files verbatim; templates build them with -Werror)."""
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"needs {compiler[0]}")
    for count in range(1, len(_FILES) + 1):
        unit = tmp_path / f"unit{count}.c"
        unit.write_text(_PRELUDE + "".join(f'#include "{name}"\n' for name in _FILES[:count]))
        built = subprocess.run(compiler + ["-std=c99", "-pedantic", level, "-Wall", "-Wextra", "-Werror",
                                           f"-I{C_DIR}", "-c", str(unit), "-o", str(tmp_path / f"unit{count}.o")],
                               capture_output=True, text=True)
        assert built.returncode == 0, f"{_FILES[count - 1]}:\n{built.stderr}"


def _window(data: np.ndarray, y0: int, x0: int, kernel_h: int, kernel_w: int, zero_point: int) -> np.ndarray:
    height, width, channels = data.shape
    window = np.full((kernel_h, kernel_w, channels), zero_point, np.int8)
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            if 0 <= y0 + ky < height and 0 <= x0 + kx < width:
                window[ky, kx] = data[y0 + ky, x0 + kx]
    return window.reshape(-1)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_gather_window_pads_with_the_zero_point(tmp_path):
    rng = np.random.default_rng(11)
    cases, want, inputs = [], [], []
    for index, (height, width, channels, kernel_h, kernel_w) in enumerate(
            [(7, 5, 1, 4, 3), (6, 4, 2, 3, 3), (5, 3, 4, 2, 1), (3, 2, 3, 5, 4)]):
        data = rng.integers(-128, 128, (height, width, channels)).astype(np.int8)
        inputs.append(f"static const int8_t input{index}[] = {{{', '.join(map(str, data.reshape(-1)))}}};")
        zero_point = int(rng.integers(-128, 128))
        # Origins from fully above/left of the input to fully below/right: every clipping case.
        for y0 in range(-kernel_h - 1, height + 2):
            for x0 in range(-kernel_w - 1, width + 2):
                cases.append(f"    mtp_gather_window_s8(input{index}, {height}, {width}, {channels}, {y0}, {x0}, "
                             f"{kernel_h}, {kernel_w}, {zero_point}, window); "
                             f"print_window(window, {kernel_h * kernel_w * channels});")
                want.append(" ".join(map(str, _window(data, y0, x0, kernel_h, kernel_w, zero_point))))
    program = "\n".join(
        ["#include <stdint.h>", "#include <stdio.h>", "#include <string.h>", '#include "mtp_fixed_point.h"',
         '#include "mtp_micro_kernels.h"']
        + inputs
        + ["static void print_window(const int8_t* window, int size) {",
           "  for (int i = 0; i < size; ++i) printf(i ? \" %d\" : \"%d\", window[i]);",
           "  printf(\"\\n\");", "}",
           "int main(void) {", "  int8_t window[96];"] + cases + ["  return 0;", "}", ""])
    got = host_c_output(tmp_path, program).splitlines()
    assert got == want


def _reference_conv(layer, data, weights, bias):
    """tflite-micro's reference int8 CONV_2D (dilation 1): taps outside the input skipped, fixed_point.py's
    requantization, clamped."""
    from project_api.compiler import fixed_point

    _, height, width, channels = layer.input_shape
    out_channels, kernel_h, kernel_w, _ = layer.weight_shape
    _, out_h, out_w, _ = layer.output_shape
    (stride_h, stride_w), (pad_top, pad_left) = layer.strides, layer.padding
    requant = layer.requant
    x = data.reshape(height, width, channels).astype(np.int64) - layer.input_zero_point
    w = weights.reshape(out_channels, kernel_h, kernel_w, channels).astype(np.int64)
    out = np.zeros((out_h, out_w, out_channels), np.int64)
    for oy in range(out_h):
        for ox in range(out_w):
            y0, x0 = oy * stride_h - pad_top, ox * stride_w - pad_left
            ys = slice(max(y0, 0), min(y0 + kernel_h, height))
            xs = slice(max(x0, 0), min(x0 + kernel_w, width))
            window = x[ys, xs]
            taps = w[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
            for o in range(out_channels):
                acc = int(bias[o] + (window * taps[o]).sum())
                value = fixed_point.multiply_by_quantized_multiplier(acc, requant.multipliers[o], requant.shifts[o])
                out[oy, ox, o] = min(max(value + requant.output_zero_point, requant.act_min), requant.act_max)
    return out.reshape(-1)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
@pytest.mark.parametrize("method, options", [("gathered", {}), ("direct", {}), ("direct", {"pixel_pairs": False})])
@pytest.mark.parametrize("shape", [
    # input HWC, output channels, kernel, strides, padding (top, left)
    ((9, 7, 1), 5, (4, 3), (2, 2), (1, 1)),  # odd channels, odd pixel count, every border
    ((6, 5, 2), 4, (3, 2), (1, 1), (1, 0)),  # two input channels
    ((5, 12, 2), 3, (2, 2), (2, 2), (0, 0)),  # stride 2, odd channels, pixel pairs away from the borders
    ((4, 9, 4), 3, (1, 1), (2, 2), (0, 0)),  # pointwise, stride 2, odd channels
    ((3, 5, 4), 5, (1, 1), (1, 1), (0, 0)),  # pointwise, stride 1 (pixels paired across rows), odd channels
])
def test_conv_kernels_equal_the_reference(shape, method, options, tmp_path):
    """conv2d_gathered and conv2d_windows (pixel pairs and single pixels) against tflite-micro's
    reference arithmetic on random data, built to C by the compiler's own path."""
    from project_api.compiler import qnn_choices, qnn_tvmscript
    from project_api.compiler._tvm_c_kernels import build_c_kernels
    from project_api.compiler.qnn_micro_kernels import with_micro_kernels
    from project_api.compiler.qnn_requant import Requant

    (height, width, channels), out_channels, (kernel_h, kernel_w), strides, padding = shape
    out_h = (height + 2 * padding[0] - kernel_h) // strides[0] + 1
    out_w = (width + 2 * padding[1] - kernel_w) // strides[1] + 1
    rng = np.random.default_rng(2)
    requant = Requant(rng.integers(1 << 30, 1 << 31, out_channels), rng.integers(-9, -6, out_channels), -128,
                      -128, 127)
    layer = qnn_choices.ConvLayer((1, height, width, channels), (out_channels, kernel_h, kernel_w, channels),
                                  (1, out_h, out_w, out_channels), strides, (1, 1), padding, 1, 7, requant)
    knobs = dict(qnn_choices.default_knobs("conv2d", layer.params), method=method, **options)
    if not qnn_choices.is_valid("conv2d", layer.params, knobs):
        pytest.skip(f"{method} {options} is no kernel for this layer")
    build, folded_bias = qnn_choices.conv_kernel("conv2d", knobs)
    assert not folded_bias
    func, values = build(layer)
    source, _ = build_c_kernels({"conv": func})
    data = rng.integers(-128, 128, height * width * channels)
    weights = rng.integers(-127, 128, out_channels * kernel_h * kernel_w * channels)
    bias = rng.integers(-3000, 3000, out_channels)

    def array(c_type, name, items):
        return f"static {c_type} {name}[] = {{{', '.join(str(int(v)) for v in items)}}};"

    arrays = [array("int8_t", "input", data), array("int8_t", "weight", weights), array("int32_t", "bias", bias)]
    names = []
    for index, value in enumerate(values):
        c_type = "int64_t" if value.dtype == np.int64 else "int32_t"
        arrays.append(array(c_type, f"param{index}", value))
        names.append(f"param{index}")
    count = out_h * out_w * out_channels
    call = ", ".join(["input", "weight", "bias"] + names)
    program = "\n".join(
        [with_micro_kernels(source)] + arrays
        + [f"static int8_t output[{count}];",
           "int main(void) {",
           f"  conv({call}, output);",
           f"  for (int i = 0; i < {count}; ++i) printf(\"%d\\n\", output[i]);",
           "  return 0;", "}", ""])
    got = [int(v) for v in host_c_output(tmp_path, "#include <stdio.h>\n" + program).split()]
    want = _reference_conv(layer, data, weights, bias)
    assert len(set(want)) > 10  # not a constant output
    assert got == list(want)
