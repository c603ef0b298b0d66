"""Load an .onnx or .tflite file and import it into a Relax IRModule.

Bad input (unknown extension, corrupt file, hybrid TFLite model, unsupported operator) becomes a
one-line ``CompileError`` before TVM sees the model. The TVM 0.27 TFLite frontend bugs that real
models hit are worked around here, in a subclass of its operator converter and a Relax rewrite;
the installed TVM is never patched. Each workaround applied is recorded in ``notes``.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import List

from .errors import CompileError, UnsupportedOperatorError

SUPPORTED_EXTENSIONS = (".onnx", ".tflite")


@dataclasses.dataclass
class ImportedModel:
    mod: "object"  # tvm.IRModule; main's parameters are the model inputs, in the model's order
    input_names: List[str]  # original model names, in the model's order
    output_names: List[str]
    model_format: str  # "ONNX" or "TFLite"
    notes: List[str]


def load_model(model_path) -> ImportedModel:
    path = Path(model_path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise CompileError(
            f"cannot compile '{path.name}': unknown model extension '{path.suffix or '(none)'}'; "
            f"supported are {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise CompileError(f"model file '{path}' does not exist")
    data = path.read_bytes()
    if suffix == ".onnx":
        return _load_onnx(path, data)
    return _load_tflite(path, data)


def error_reason(err: BaseException) -> str:
    """An error's reason on one line, for a CompileError: the last non-empty line of its text (a
    multi-line message ends with its most specific line)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


# ---------------------------------------------------------------------------------------------
# ONNX


def _load_onnx(path: Path, data: bytes) -> ImportedModel:
    import onnx

    invalid = f"'{path}' is not a valid ONNX model (truncated or corrupt file); export it again"
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as err:  # protobuf DecodeError, onnx ValidationError
        raise CompileError(f"{invalid}: {error_reason(err)}") from None
    if not model.graph.node:
        raise CompileError(invalid)

    from tvm.relax.frontend.onnx import from_onnx

    from .operators import nearest_alternative, onnx_relax_operators

    known_ops = onnx_relax_operators()
    for node in model.graph.node:
        if node.op_type not in known_ops:
            raise UnsupportedOperatorError(node.op_type, node.name or node.output[0], "ONNX",
                                           nearest_alternative(node.op_type, "ONNX", known_ops))

    notes: List[str] = []
    initializers = {init.name for init in model.graph.initializer}
    graph_inputs = [value for value in model.graph.input if value.name not in initializers]
    shape_dict = {}
    for value in graph_inputs:
        dims = value.type.tensor_type.shape.dim
        shape = []
        for index, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
            elif index == 0:
                shape.append(1)  # a symbolic batch dimension: one sample per inference on an MCU
                notes.append(f"ONNX input '{value.name}': symbolic batch dimension set to 1")
            else:
                raise CompileError(
                    f"ONNX input '{value.name}' has a symbolic dimension {index} "
                    f"('{dim.dim_param}'); export the model with static input shapes"
                )
        shape_dict[value.name] = shape
    try:
        with warnings.catch_warnings():
            # "Renaming name a:0 to a_0": the frontend's own var names; ours keep the model's.
            warnings.filterwarnings("ignore", message="Renaming name")
            mod = from_onnx(model, shape_dict=shape_dict, keep_params_in_input=False)
    except Exception as err:
        raise CompileError(f"the TVM ONNX frontend could not import '{path.name}': {error_reason(err)}") from None
    return ImportedModel(
        mod=mod,
        input_names=[value.name for value in graph_inputs],
        output_names=[value.name for value in model.graph.output],
        model_format="ONNX",
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------
# TFLite


def tflite_tensor_name(subgraph, index: int) -> str:
    """A tensor's name, or a stable synthesized one when the converter stripped it (tflite-micro's
    test models carry none): ``input_<k>`` / ``output_<k>`` for the k-th subgraph input / output,
    ``t<index>`` for any other tensor."""
    raw = subgraph.Tensors(int(index)).Name()
    if raw:
        return raw.decode("utf-8", errors="replace")
    index = int(index)
    inputs = [int(i) for i in subgraph.InputsAsNumpy()] if subgraph.InputsLength() else []
    outputs = [int(i) for i in subgraph.OutputsAsNumpy()] if subgraph.OutputsLength() else []
    if index in inputs:
        return f"input_{inputs.index(index)}"
    if index in outputs:
        return f"output_{outputs.index(index)}"
    return f"t{index}"


def read_tflite(path: Path, data: bytes):
    """Parse and check a .tflite file: (model, subgraph, operator names, input names, output names).
    Missing tensor names are not corruption: they get ``tflite_tensor_name``'s synthesized names."""
    import tflite

    invalid = f"'{path}' is not a valid TFLite model (truncated or corrupt file); convert it again"
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise CompileError(invalid)
    try:
        model = tflite.Model.GetRootAsModel(data, 0)
        subgraph = model.Subgraphs(0)
        # Touch every table the import reads so a truncated file fails here, not inside TVM.
        op_names = []
        for index in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(index)
            op_names.append(_tflite_op_name(model, op))
            for tensor_index in list(op.InputsAsNumpy()) + list(op.OutputsAsNumpy()):
                if tensor_index >= 0:
                    tensor = subgraph.Tensors(int(tensor_index))
                    tensor.Name()
                    model.Buffers(tensor.Buffer()).DataAsNumpy()
        input_names = [tflite_tensor_name(subgraph, i) for i in subgraph.InputsAsNumpy()]
        output_names = [tflite_tensor_name(subgraph, i) for i in subgraph.OutputsAsNumpy()]
    except Exception as err:  # flatbuffers reads past the end: struct.error, IndexError ...
        raise CompileError(f"{invalid}: {type(err).__name__}: {' '.join(str(err).split())}") from None
    if not op_names:
        raise CompileError(invalid)
    return model, subgraph, op_names, input_names, output_names


def _load_tflite(path: Path, data: bytes) -> ImportedModel:
    model, subgraph, op_names, input_names, output_names = read_tflite(path, data)

    from tvm.relax.frontend.tflite import tflite_frontend

    from .operators import (nearest_alternative, tflite_int8_operators, tflite_relax_int8_operators,
                            tflite_relax_operators)

    converter_class = _workaround_converter_class(tflite_frontend)
    supported = tflite_relax_operators()
    supported_int8 = tflite_relax_int8_operators()
    for index, op_name in enumerate(op_names):
        op = subgraph.Operators(index)
        node_name = _tflite_op_output_name(subgraph, op)
        if op_name not in supported:
            raise UnsupportedOperatorError(op_name, node_name, "TFLite", nearest_alternative(
                op_name, "TFLite", sorted(set(supported) | set(tflite_int8_operators()))))
        if _is_hybrid_op(model, subgraph, op):
            raise CompileError(
                f"'{path.name}' is a hybrid (dynamic-range quantized) TFLite model: operator {op_name} "
                f"(node '{node_name}') has float activations and int8 weights; convert it with "
                f"full-integer quantization (int8 inputs and activations) or keep it float"
            )
        if op_name not in supported_int8 and _is_quantized_op(subgraph, op):
            # Neither the integer path (the model did not take it) nor TVM takes it quantized.
            raise UnsupportedOperatorError(op_name, node_name, "TFLite (int8)", nearest_alternative(
                op_name, "TFLite", sorted(set(supported_int8) | set(tflite_int8_operators()))))

    notes: List[str] = []
    converter_class.notes = notes
    try:
        mod = tflite_frontend.from_tflite(model, op_converter=converter_class)
    except Exception as err:
        raise CompileError(f"the TVM TFLite frontend could not import '{path.name}': {error_reason(err)}") from None
    mod = _round_int_average_pools(mod, notes)
    return ImportedModel(mod, input_names, output_names, "TFLite", notes)


def _tflite_op_name(model, op) -> str:
    from tflite.BuiltinOperator import BuiltinOperator

    code = model.OperatorCodes(op.OpcodeIndex())
    # Old files store the code in the deprecated int8 field only; new ones in both (or >127).
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return custom.decode() if custom else "CUSTOM"
    for name, value in vars(BuiltinOperator).items():
        if value == builtin and not name.startswith("_"):
            return name
    return f"BUILTIN_{builtin}"


def _tflite_op_output_name(subgraph, op) -> str:
    outputs = [int(i) for i in op.OutputsAsNumpy() if i >= 0]
    return tflite_tensor_name(subgraph, outputs[0]) if outputs else "?"


def _is_quantized_op(subgraph, op) -> bool:
    """Any input or output carries quantization parameters."""
    for tensor_index in list(op.InputsAsNumpy()) + list(op.OutputsAsNumpy()):
        if tensor_index < 0:
            continue
        quant = subgraph.Tensors(int(tensor_index)).Quantization()
        if quant is not None and quant.ScaleLength():
            return True
    return False


def _is_hybrid_op(model, subgraph, op) -> bool:
    """Float activations with int8 weights: TFLite's dynamic-range quantization."""
    from tflite.TensorType import TensorType

    float_activation = int8_weight = False
    for tensor_index in op.InputsAsNumpy():
        if tensor_index < 0:
            continue
        tensor = subgraph.Tensors(int(tensor_index))
        is_constant = model.Buffers(tensor.Buffer()).DataLength() > 0
        if not is_constant and tensor.Type() == TensorType.FLOAT32:
            float_activation = True
        if is_constant and tensor.Type() in (TensorType.INT8, TensorType.UINT8):
            int8_weight = True
    return float_activation and int8_weight


def _workaround_converter_class(tflite_frontend):
    """The frontend's OperatorConverter with fixes for the bugs real TFLM/MLPerf Tiny models hit."""
    from tvm import relax

    base = tflite_frontend.OperatorConverter

    class WorkaroundConverter(base):
        notes: List[str] = []

        def dequantize(self, expr, tensor):
            # DEPTHWISE_CONV_2D biases carry quantized_dimension 3 (the weights' channel axis)
            # although the bias is 1-D: clamp the axis to the tensor's rank.
            axis = tensor.qnn_params["axis"]
            rank = len(self.get_tensor_shape(tensor))
            if rank and axis >= rank:
                self.notes.append(
                    f"tensor '{tflite_tensor_name(self.subgraph, tensor.tensor_idx)}': quantized_dimension {axis} "
                    f"clamped to {rank - 1} (bias of rank {rank})"
                )
                tensor.qnn_params["axis"] = rank - 1
            return super().dequantize(expr, tensor)

        def convert_fully_connected(self, op):
            # The frontend feeds a rank-4 input straight into matmul; TFLite flattens it to
            # [-1, n_inputs] first.
            input_tensor = self.get_input_tensors(op)[0]
            weight_tensor = self.get_input_tensors(op)[1]
            rank = len(self.get_tensor_shape(input_tensor))
            if rank <= 2 or not self.has_expr(input_tensor.tensor_idx):
                return super().convert_fully_connected(op)
            n_inputs = int(self.get_tensor_shape(weight_tensor)[1])
            name = tflite_frontend.get_tensor_name(self.subgraph, input_tensor.tensor_idx)
            original = self.exp_tab.exprs[name]
            self.exp_tab.exprs[name] = self.bb.normalize(relax.op.reshape(original, [-1, n_inputs]))
            self.notes.append(f"FULLY_CONNECTED on rank-{rank} input '{name}': input flattened to 2-D")
            try:
                return super().convert_fully_connected(op)
            finally:
                self.exp_tab.exprs[name] = original

    return WorkaroundConverter


def _round_int_average_pools(mod, notes: List[str]):
    """The frontend computes an integer AVERAGE_POOL_2D as an int32 pool, which truncates;
    TFLite rounds half away from zero. Recompute those pools in float and round."""
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    data = wildcard()
    widened = is_op("relax.astype")(data)
    pooled = is_op("relax.nn.avg_pool2d")(widened)
    narrowed = is_op("relax.astype")(pooled)

    def rewrite(expr, matches):
        source = matches[data]
        if matches[widened].ty.dtype != "int32" or source.ty.dtype not in ("int8", "uint8"):
            return expr
        pool_call = matches[pooled]
        as_float = relax.op.astype(source, "float32")
        mean = relax.Call(pool_call.op, [as_float], pool_call.attrs)
        half = relax.const(0.5, "float32")
        rounded = relax.op.where(
            relax.op.greater_equal(mean, relax.const(0.0, "float32")),
            relax.op.floor(relax.op.add(mean, half)),
            relax.op.ceil(relax.op.subtract(mean, half)),
        )
        notes.append("integer AVERAGE_POOL_2D: rounded half away from zero as TFLite does (frontend truncates)")
        return relax.op.astype(rounded, expr.ty.dtype)

    main = rewrite_call(narrowed, rewrite, mod["main"])
    mod["main"] = main
    return mod
