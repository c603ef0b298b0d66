"""LoweredModel: the contract between lowering (TVM) and the static-runtime generator.

Lowering (``lowering.py``) produces a LoweredModel; the planner, the runtime generator, the graph
JSON and the MLF metadata consume it and never touch TVM. See docs/architecture.md, contract 1.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np

# Tensor kinds.
INPUT = "input"  # model input: a caller-owned buffer, outside the arena
OUTPUT = "output"  # model output: a caller-owned buffer, outside the arena
CONSTANT = "constant"  # weights: const arrays in flash
INTERMEDIATE = "intermediate"  # activations between kernels: placed in the arena
WORKSPACE = "workspace"  # kernel scratch passed as an extra parameter: placed in the arena
# A variable that persists across invocations (TFLite's is_variable tensors: SVDF's activation
# state): its own zero-initialized static buffer outside the arena, zeroed by tvmgen_<c>_reset.
STATE = "state"

KINDS = (INPUT, OUTPUT, CONSTANT, INTERMEDIATE, WORKSPACE, STATE)


@dataclasses.dataclass
class Tensor:
    """One storage tensor. ``name`` is unique in the model (the original model name for inputs
    and outputs, a generated one otherwise); C code uses ``naming.c_identifier(name)``."""

    name: str
    shape: Tuple[int, ...]
    dtype: str  # numpy dtype name: "float32", "int8", "uint8", "int16", "int32", "int64", "bool"
    kind: str
    data: Optional[np.ndarray] = None  # CONSTANT only, already of ``dtype`` and ``shape``

    @property
    def count(self) -> int:
        """Number of elements (1 for a scalar)."""
        count = 1
        for dim in self.shape:
            count *= int(dim)
        return count

    @property
    def nbytes(self) -> int:
        return self.count * np.dtype(self.dtype).itemsize


@dataclasses.dataclass
class KernelCall:
    """One call of a plain-C kernel in destination-passing style.

    ``args`` are tensor names in the kernel's parameter order (inputs and constants, then outputs,
    then workspaces). The kernel's C prototype is ``int32_t func_name(T0* a0, T1* a1, ...)``
    with Ti the C type of the tensor's dtype.
    """

    func_name: str
    args: List[str]
    # Which args the kernel writes (outputs and workspaces); the rest are read.
    writes: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LoweredModel:
    name: str  # the model name given to tvmc (--model-name), e.g. "default"
    tensors: Dict[str, Tensor]
    inputs: List[str]  # model input tensor names, in the model's order
    outputs: List[str]  # model output tensor names, in the model's order
    calls: List[KernelCall]  # in execution order
    kernels_c: str  # C99 source defining every kernel in ``calls``; no TVM headers needed
    source_text: str = ""  # the Relax module as text, archived as src/<name>.relax
    target: str = "c"  # the target as given, archived in metadata
    notes: List[str] = dataclasses.field(default_factory=list)  # workarounds applied, for the report

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]


class PartsBuilder:
    """What both lowering paths (``lowering.py``, ``qnn.py``) build up: the storage tensors and the
    kernel calls of a LoweredModel."""

    def __init__(self, input_names, output_names):
        self.tensors: Dict[str, Tensor] = {}
        self.calls: List[KernelCall] = []
        # The model's own names, kept free for its inputs and outputs even before they are added.
        self._reserved = set(input_names) | set(output_names)

    def _fresh(self, stem: str) -> str:
        """``stem_N`` with the first N >= the tensor count that names no tensor and no model input or output."""
        index = len(self.tensors)
        while f"{stem}_{index}" in self._reserved or f"{stem}_{index}" in self.tensors:
            index += 1
        return f"{stem}_{index}"

    def add_workspaces(self, c_kernels) -> None:
        """Gives each call its kernel's scratch buffers (``c_kernels``: symbol -> ``CKernel``, whose
        ``workspaces`` list (dtype, element count)) as WORKSPACE tensors appended to its arguments."""
        for call in self.calls:
            kernel = c_kernels.get(call.func_name)
            for dtype, count in (kernel.workspaces if kernel else []):
                name = self._fresh("workspace")
                self.tensors[name] = Tensor(name, (count,), dtype, WORKSPACE)
                call.args.append(name)
                call.writes.append(name)
