"""A small TFLite flatbuffer writer, with the flatbuffers builder of the ``tflite`` package (no
TensorFlow needed): ``onnx_qdq.py`` writes an ONNX QDQ model's integer graph with it, and the tests
build their one-operator models with it.

    w = TFLiteWriter()
    x = w.tensor("x", [1, 4], INT8, scale=0.1, zero_point=3)
    y = w.tensor("y", [1, 4], INT8, scale=0.1, zero_point=3)
    w.operator("TANH", [x], [y])
    w.save(path, inputs=[x], outputs=[y])

Options tables are given as ``("Pool2DOptions", {"Padding": 1, "StrideW": 2, ...})``: the field
names of the ``tflite`` package's ``<Options>Add<Field>`` functions; a list value becomes an int32
vector (SqueezeOptions' SqueezeDims ...).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

INT8, INT16, INT32, FLOAT32 = 9, 7, 2, 0
_NUMPY = {INT8: np.int8, INT16: np.int16, INT32: np.int32, FLOAT32: np.float32}


def _module(name: str):
    return importlib.import_module(f"tflite.{name}")


class TFLiteWriter:
    def __init__(self, names: bool = True):
        import flatbuffers

        self.b = flatbuffers.Builder(4096)
        self.names = names
        self.buffers: List[bytes] = [b""]
        self.tensors: List[int] = []
        self.operators: List[int] = []
        self.codes: List[Tuple[int, int]] = []

    def _quantization(self, scale, zero_point, dimension: int):
        Q = _module("QuantizationParameters")
        scales = self.b.CreateNumpyVector(np.atleast_1d(np.asarray(scale, np.float32)))
        zeros = self.b.CreateNumpyVector(np.atleast_1d(np.asarray(zero_point, np.int64)))
        Q.QuantizationParametersStart(self.b)
        Q.QuantizationParametersAddScale(self.b, scales)
        Q.QuantizationParametersAddZeroPoint(self.b, zeros)
        Q.QuantizationParametersAddQuantizedDimension(self.b, dimension)
        return Q.QuantizationParametersEnd(self.b)

    def tensor(self, name: str, shape: Sequence[int], dtype: int, scale=None, zero_point=0,
               data: Optional[np.ndarray] = None, dimension: int = 0, variable: bool = False) -> int:
        """A tensor; ``data`` makes it a constant, ``variable`` a state tensor (SVDF)."""
        buffer = 0
        if data is not None:
            self.buffers.append(np.ascontiguousarray(np.asarray(data, _NUMPY[dtype])).tobytes())
            buffer = len(self.buffers) - 1
        quant = self._quantization(scale, zero_point, dimension) if scale is not None else None
        T = _module("Tensor")
        name_offset = self.b.CreateString(name) if self.names else None
        shape_vec = self.b.CreateNumpyVector(np.asarray(shape, np.int32))
        T.TensorStart(self.b)
        T.TensorAddShape(self.b, shape_vec)
        T.TensorAddType(self.b, dtype)
        T.TensorAddBuffer(self.b, buffer)
        if name_offset is not None:
            T.TensorAddName(self.b, name_offset)
        if quant is not None:
            T.TensorAddQuantization(self.b, quant)
        if variable:
            T.TensorAddIsVariable(self.b, True)
        self.tensors.append(T.TensorEnd(self.b))
        return len(self.tensors) - 1

    def const(self, name: str, data, dtype: int = INT32, **quant) -> int:
        data = np.asarray(data, _NUMPY[dtype])
        return self.tensor(name, data.shape, dtype, data=data, **quant)

    def _options(self, options) -> Tuple[int, int]:
        if options is None:
            return 0, 0
        table, fields = options
        module = _module(table)
        offsets: Dict[str, int] = {}
        for field, value in fields.items():
            if isinstance(value, (list, tuple, np.ndarray)):
                offsets[field] = self.b.CreateNumpyVector(np.asarray(value, np.int32))
        getattr(module, f"{table}Start")(self.b)
        for field, value in fields.items():
            getattr(module, f"{table}Add{field}")(self.b, offsets.get(field, value))
        end = getattr(module, f"{table}End")(self.b)
        kind = getattr(_module("BuiltinOptions").BuiltinOptions, table)
        return kind, end

    def operator(self, builtin: str, inputs: Sequence[int], outputs: Sequence[int], options=None,
                 version: int = 1) -> None:
        code = getattr(_module("BuiltinOperator").BuiltinOperator, builtin)
        if (code, version) not in self.codes:
            self.codes.append((code, version))
        kind, table = self._options(options)
        O = _module("Operator")
        in_vec = self.b.CreateNumpyVector(np.asarray(inputs, np.int32))
        out_vec = self.b.CreateNumpyVector(np.asarray(outputs, np.int32))
        O.OperatorStart(self.b)
        O.OperatorAddOpcodeIndex(self.b, self.codes.index((code, version)))
        O.OperatorAddInputs(self.b, in_vec)
        O.OperatorAddOutputs(self.b, out_vec)
        if kind:
            O.OperatorAddBuiltinOptionsType(self.b, kind)
            O.OperatorAddBuiltinOptions(self.b, table)
        self.operators.append(O.OperatorEnd(self.b))

    def _vector(self, start, items) -> int:
        start(self.b, len(items))
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def save(self, path, inputs: Sequence[int], outputs: Sequence[int]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.finish(inputs, outputs))
        return path

    def finish(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        """The model's flatbuffer (call once)."""
        b = self.b
        C = _module("OperatorCode")
        codes = []
        for code, version in self.codes:
            C.OperatorCodeStart(b)
            C.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            C.OperatorCodeAddBuiltinCode(b, code)
            C.OperatorCodeAddVersion(b, version)
            codes.append(C.OperatorCodeEnd(b))
        S = _module("SubGraph")
        tensors = self._vector(S.SubGraphStartTensorsVector, self.tensors)
        operators = self._vector(S.SubGraphStartOperatorsVector, self.operators)
        in_vec = b.CreateNumpyVector(np.asarray(inputs, np.int32))
        out_vec = b.CreateNumpyVector(np.asarray(outputs, np.int32))
        S.SubGraphStart(b)
        S.SubGraphAddTensors(b, tensors)
        S.SubGraphAddInputs(b, in_vec)
        S.SubGraphAddOutputs(b, out_vec)
        S.SubGraphAddOperators(b, operators)
        subgraph = S.SubGraphEnd(b)
        B = _module("Buffer")
        buffers = []
        for data in self.buffers:
            data_vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
            B.BufferStart(b)
            if data_vec is not None:
                B.BufferAddData(b, data_vec)
            buffers.append(B.BufferEnd(b))
        M = _module("Model")
        codes_vec = self._vector(M.ModelStartOperatorCodesVector, codes)
        subgraphs = self._vector(M.ModelStartSubgraphsVector, [subgraph])
        buffers_vec = self._vector(M.ModelStartBuffersVector, buffers)
        M.ModelStart(b)
        M.ModelAddVersion(b, 3)
        M.ModelAddOperatorCodes(b, codes_vec)
        M.ModelAddSubgraphs(b, subgraphs)
        M.ModelAddBuffers(b, buffers_vec)
        b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())
