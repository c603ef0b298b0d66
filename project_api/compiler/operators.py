"""Which operators the compiler takes, and how: the data behind docs/operators.md and behind the
"nearest supported alternative" of an unsupported-operator refusal.

Every status is derived from the code that implements it, never written by hand:
- int8 integer kernels: ``qnn._CONVERTERS`` / ``qnn._ALIASES`` (bit-exact with tflite-micro);
- Relax path: the TVM 0.27 TFLite / ONNX frontends' converter maps (float kernels; int8 models
  with such an operator run as dequantize -> float op -> quantize, within a few LSB);
- refused: neither, or in ``REFUSED_BY_FRONTEND`` (operators TVM lists but cannot import).
``render_markdown()`` writes docs/operators.md; tests/test_tflite_coverage.py checks the file
against it, so the table cannot drift from the code.
"""

from __future__ import annotations

import difflib
from typing import Dict, List, Sequence

# The builtin operators the tflite-micro PyPI interpreter registers (its op resolver's list: the
# Register_* functions of tflite_micro/python/tflite_micro/_runtime.so, version 0.dev20261023),
# custom operators (ETHOSU, CIRCULAR_BUFFER, DETECTION_POSTPROCESS, the signal library) left out.
TFLITE_MICRO_BUILTINS = (
    "ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND "
    "BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE "
    "DEPTHWISE_CONV_2D DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS "
    "FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH "
    "IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOG_SOFTMAX LOGICAL_AND "
    "LOGICAL_NOT LOGICAL_OR LOGISTIC MAX_POOL_2D MAXIMUM MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL "
    "PACK PAD PADV2 PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE "
    "RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX "
    "SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE "
    "STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK "
    "VAR_HANDLE WHILE ZEROS_LIKE"
).split()
# Registered too, but custom operators (or a second registration of a builtin).
TFLITE_MICRO_CUSTOM = ("BASIC_CLASSIFIER", "CIRCULAR_BUFFER", "DECODE", "DETECTION_POSTPROCESS", "ETHOSU",
                       "L2NORM_REF")

# Operators the TVM frontend's converter map lists but cannot import for these models, with why.
REFUSED_BY_FRONTEND: Dict[str, str] = {}

# The closest supported operator, where the name alone would not find it (difflib does otherwise).
_ALTERNATIVES = {
    "TFLite": {
        "DYNAMIC_UPDATE_SLICE": "STRIDED_SLICE",
        "L2_POOL_2D": "AVERAGE_POOL_2D",
        "BATCH_MATMUL": "FULLY_CONNECTED",
        "UNIDIRECTIONAL_SEQUENCE_LSTM": "FULLY_CONNECTED + LOGISTIC + TANH (unrolled)",
        "SVDF": "FULLY_CONNECTED",
        "MIRROR_PAD": "PAD",
        "PADV2": "PAD",
        "SPLIT_V": "SPLIT",
        "SLICE": "STRIDED_SLICE",
        "LOG_SOFTMAX": "SOFTMAX",
        "RESIZE_BILINEAR": "RESIZE_NEAREST_NEIGHBOR",
        "TRANSPOSE_CONV": "CONV_2D",
        "GATHER": "STRIDED_SLICE (constant indices)",
        "GATHER_ND": "STRIDED_SLICE (constant indices)",
        "SQUARE": "MUL",
        "SELECT_V2": "MAXIMUM / MINIMUM",
        "ELU": "LEAKY_RELU",
        "ADD_N": "ADD",
    },
    "ONNX": {
        "QLinearConv": "Conv between DequantizeLinear/QuantizeLinear (QDQ form)",
        "QLinearMatMul": "MatMul between DequantizeLinear/QuantizeLinear (QDQ form)",
        "ConvInteger": "Conv between DequantizeLinear/QuantizeLinear (QDQ form)",
        "QLinearAdd": "Add between DequantizeLinear/QuantizeLinear (QDQ form)",
        "Det": "no equivalent: compute it outside the model",
        "LSTM": "MatMul + Sigmoid + Tanh (unrolled)",
        "GRU": "MatMul + Sigmoid + Tanh (unrolled)",
    },
}


# The ONNX operators of a QDQ model's integer path (onnx_qdq.py's handlers), Relu fused.
QDQ_OPERATORS = ("Conv", "Gemm", "Relu", "MaxPool", "GlobalAveragePool", "Flatten")


def tflite_relax_operators() -> List[str]:
    """The TFLite builtins TVM's frontend converts (its per-instance convert_map)."""
    from tvm.relax.frontend.tflite import tflite_frontend

    converter = tflite_frontend.OperatorConverter(None, None, tflite_frontend.ExprTable(), None)
    return sorted(set(converter.convert_map) - set(REFUSED_BY_FRONTEND))


def tflite_relax_int8_operators() -> List[str]:
    """The TFLite builtins TVM's frontend imports with quantized tensors (as float requantization)."""
    from tvm.relax.frontend.tflite import tflite_frontend

    return sorted(set(tflite_relax_operators()) & set(tflite_frontend.OperatorConverter._SUPPORTED_QUANTIZED_OPS))


def onnx_relax_operators() -> List[str]:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    return sorted(set(_get_convert_map()) | {"Constant", "If"})


def tflite_int8_operators() -> List[str]:
    """The TFLite builtins the integer path lowers to bit-exact kernels (or aliases)."""
    from . import qnn

    return sorted(set(qnn._CONVERTERS) | set(qnn._ALIASES))


def nearest_alternative(op_type: str, model_format: str, supported: Sequence[str]) -> str:
    """The supported operator closest to ``op_type``: a curated equivalent, else the closest name."""
    curated = _ALTERNATIVES.get(model_format, {}).get(op_type)
    if curated is not None:
        return curated
    close = difflib.get_close_matches(op_type.upper(), [s.upper() for s in supported], n=1, cutoff=0.75)
    if close:
        return next(s for s in supported if s.upper() == close[0])
    return "no close equivalent"


# When an int8 operator takes the integer path (otherwise the model takes the Relax path).
INT8_CONDITIONS = {
    "ADD": "no constant operand",
    "AVERAGE_POOL_2D": "input and output quantized alike",
    "MAX_POOL_2D": "input and output quantized alike",
    "CONCATENATION": "inputs and output quantized alike, as tflite-micro requires",
    "CONV_2D": "constant symmetric weights",
    "DEPTHWISE_CONV_2D": "constant symmetric weights",
    "FULLY_CONNECTED": "constant symmetric weights",
    "LOGISTIC": "output scale 1/256, zero point -128",
    "TANH": "output scale 1/128, zero point 0",
    "MEAN": "over height and width of a 4-D tensor",
    "PRELU": "constant alpha",
    "QUANTIZE": "float32 or int8 input",
    "DEQUANTIZE": "int8 input, float32 output",
    "SOFTMAX": "output scale 1/256, zero point -128",
    "STRIDED_SLICE": "no ellipsis or new-axis mask",
    "SVDF": "int16 state and time weights; state kept across runs, reset by tvmgen_<c>_reset",
}


def _int8_status(op: str, relax_int8: set, int8: set, aliases: set) -> str:
    if op in aliases:
        return "bit-exact (alias, no kernel)"
    if op in int8:
        condition = INT8_CONDITIONS.get(op)
        return f"bit-exact ({condition})" if condition else "bit-exact"
    if op in REFUSED_BY_FRONTEND:
        return f"refused: {REFUSED_BY_FRONTEND[op]}"
    if op in relax_int8:
        return "supported, float requantization"
    return f"refused (nearest: {nearest_alternative(op, 'TFLite', sorted(relax_int8 | int8))})"


def _float_status(op: str, relax: set, int8: set) -> str:
    if op in relax:
        return "supported"
    return f"refused (nearest: {nearest_alternative(op, 'TFLite', sorted(relax | int8))})"


def render_markdown() -> str:
    from . import qnn

    relax = set(tflite_relax_operators())
    relax_int8 = set(tflite_relax_int8_operators())
    int8 = set(tflite_int8_operators())
    aliases = set(qnn._ALIASES)
    lines = [
        "# Operator coverage",
        "",
        "Generated by `python -m project_api.compiler.operators > docs/operators.md`;",
        "tests/test_tflite_coverage.py fails when this file differs from the code.",
        "",
        "## TFLite: every builtin tflite-micro registers",
        "",
        "- **bit-exact** (int8): the operator has an integer kernel (docs/int8-kernels.md). A model whose",
        "  inputs and outputs are int8 (or float32 behind a QUANTIZE / DEQUANTIZE) and whose operators",
        "  are all bit-exact takes the integer path: its outputs equal tflite-micro's reference kernels",
        "  bit for bit (tests/test_tflite_coverage.py, tests/test_compile_accuracy.py).",
        "- **supported, float requantization** (int8): TVM's frontend imports it; a model with such an",
        "  operator runs every operator as dequantize -> float op -> quantize (LiteRT's arithmetic:",
        "  within a few LSB of tflite-micro, not bit-exact). A model is never split between the paths.",
        "- **supported** (float32): TVM's frontend imports it (float fixtures match tflite-micro within",
        "  1e-4 of the output range).",
        "- **refused**: compiling stops with one line naming the operator, the node and the nearest",
        "  supported alternative. int16 activations are not on the integer path yet.",
        "",
        "| operator | int8 | float32 |",
        "|---|---|---|",
    ]
    lines += [f"| {op} | {_int8_status(op, relax_int8, int8, aliases)} | {_float_status(op, relax, int8)} |"
              for op in TFLITE_MICRO_BUILTINS]
    extra = sorted(int8 - set(TFLITE_MICRO_BUILTINS))
    if extra:
        lines += ["", "Also bit-exact (not registered by tflite-micro): " + ", ".join(extra) + "."]
    lines += [
        "",
        "## ONNX: the operators we accept",
        "",
        "QDQ int8 models (onnxruntime's static quantization, PyTorch's QDQ export) built of",
        f"{', '.join(QDQ_OPERATORS)} between DequantizeLinear / QuantizeLinear (int8",
        "activations, symmetric int8 weights, int32 biases) take the integer path (project_api/compiler/",
        "onnx_qdq.py, tests/test_onnx_qdq.py): integer kernels with fixed-point requantization, the same",
        "outputs on host and device, within 1 LSB of onnxruntime per layer. Every other model goes",
        "through Relax with every operator of TVM 0.27's ONNX frontend below (float kernels; a QDQ",
        "model as dequantize -> float op -> quantize). Any other operator is refused with the nearest.",
        "",
    ]
    ops = onnx_relax_operators()
    for start in range(0, len(ops), 10):
        lines.append(", ".join(ops[start:start + 10]) + ("," if start + 10 < len(ops) else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
