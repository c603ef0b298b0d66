"""The tuning tasks of a model: one per distinct kernel signature, with its candidate knobs.

The knobs and their choices are the compiler's (``compiler/qnn_choices.py``, the one table every
compile reads); here a model's int8 operators become ``KernelTask``s, layers with the same
signature sharing one task (KWS's four depthwise layers are one kernel), and each candidate gets
the features the cost model (``tuner.py``) learns from.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Dict, List

from ..compiler import qnn_choices


@dataclasses.dataclass
class KernelTask:
    signature: str
    kind: str
    params: dict
    op_index: int  # the first layer with this signature
    layers: int  # how many layers of the model share it
    candidates: List[dict]  # valid knob settings, the untuned (default) first

    @property
    def default(self) -> dict:
        return self.candidates[0]


class NotTunable(Exception):
    """The model does not take the integer kernels (the only ones with knobs)."""


def model_tasks(model_path: Path) -> List[KernelTask]:
    """The tasks of an int8 TFLite model, in execution order."""
    from ..compiler import frontend, qnn

    path = Path(model_path)
    if path.suffix.lower() != ".tflite":
        raise NotTunable(f"{path.name}: tvmc tune tunes the integer kernels of int8 TFLite models; this is not one")
    model, subgraph, op_names, input_names, output_names = frontend.read_tflite(path, path.read_bytes())
    builder = qnn.lower_tflite_int8(model, subgraph, op_names, input_names, output_names, "tvmgen_default_")
    if builder is None:
        raise NotTunable(f"{path.name} does not take the integer kernels (docs/int8-kernels.md): nothing to tune")
    tasks: Dict[str, KernelTask] = {}
    for symbol, spec in builder.specs.items():
        if not spec.kind:
            continue  # a kernel whose builder has no table entry (qnn_choices) yet: nothing to tune
        sig = qnn_choices.signature(spec.kind, spec.params)
        if sig in tasks:
            tasks[sig].layers += 1
            continue
        op_index = int(symbol[len("tvmgen_default_q"):].split("_", 1)[0])
        tasks[sig] = KernelTask(sig, spec.kind, spec.params, op_index, 1, qnn_choices.candidates(spec.kind, spec.params))
    return list(tasks.values())


def _macs(kind: str, params: dict) -> float:
    if kind.startswith("conv2d") or kind.startswith("depthwise"):
        out = params["output_shape"]
        weight = params["weight_shape"]
        per_output = weight[1] * weight[2] * (weight[3] if kind.startswith("conv2d") else 1)
        return float(out[1] * out[2] * out[3] * per_output)
    if kind == "fully_connected":
        return float(params["batches"] * params["depth"] * params["units"])
    return 1.0


def features(task: KernelTask, knobs: dict) -> List[float]:
    """What the cost model sees of one candidate: one-hot knob values, each crossed with the
    kernel's kind, and the kernel's size and shape facts crossed with the knobs that act on them."""
    row: List[float] = []
    for kind, space in sorted(qnn_choices.KNOBS.items()) + [("other", qnn_choices.OTHER_KNOBS)]:
        same = task.kind == kind or (kind == "other" and task.kind not in qnn_choices.KNOBS)
        for name in sorted(space):
            for value in space[name]:
                row.append(1.0 if same and knobs.get(name) == value else 0.0)
    log_macs = math.log10(max(_macs(task.kind, task.params), 1.0))
    channels = task.params.get("input_shape", [0, 0, 0, 0])[-1] if "input_shape" in task.params else 0
    pointwise = 1.0 if task.params.get("weight_shape", [0, 0, 0, 0])[1:3] == [1, 1] else 0.0
    for name, value in (("opt", "O2"), ("method", "widened"), ("method", "gathered_widened"),
                        ("pixel_pairs", False)):
        on = 1.0 if knobs.get(name) == value else 0.0
        row += [on * log_macs, on * math.log2(max(channels, 1)), on * pointwise]
    return row
