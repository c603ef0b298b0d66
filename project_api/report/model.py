"""What a report says about a model, read back from its Model Library Format archive.

Everything comes from the archive ``tvmc compile`` wrote (docs/mlf.md): the kernel call sequence
and tensor shapes from the graph JSON, the arena plan from ``metadata.json``
(``microtvm_projects.memory``), the weights from the parameters. Reading the archive rather than
the compiler's objects lets ``tvmc run --profile`` describe a generated project's model with the
same code as ``tvmc compile --report``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np

from ..mlf import reader as mlf

# Ops whose MACs are counted: one multiply-accumulate per weight per output position. Other
# kernels (pools, adds, softmax, copies) are reported with 0 MACs, as their cost is per element.
_WEIGHTED_OPS = ("conv", "dense", "fully_connected", "matmul")


@dataclasses.dataclass(frozen=True)
class TensorRef:
    name: str
    kind: str            # input, output, constant, intermediate, workspace
    shape: Tuple[int, ...]
    dtype: str
    nbytes: int
    arena_offset: int    # -1 outside the arena


@dataclasses.dataclass(frozen=True)
class Kernel:
    index: int           # call index in tvmgen_<c>_run
    func_name: str
    op: str              # the op the kernel computes, from its name (conv2d, depthwise_conv2d, ...)
    reads: Tuple[TensorRef, ...]
    writes: Tuple[TensorRef, ...]
    macs: int

    @property
    def weight_bytes(self) -> int:
        return sum(t.nbytes for t in self.reads if t.kind == "constant")

    @property
    def activation_bytes(self) -> int:
        """Bytes of tensors (not weights) the call reads and writes."""
        return sum(t.nbytes for t in self.reads + self.writes if t.kind != "constant")

    @property
    def output(self) -> TensorRef:
        outs = [t for t in self.writes if t.kind != "workspace"]
        return outs[0] if outs else self.writes[0]


@dataclasses.dataclass(frozen=True)
class Placement:
    name: str
    kind: str
    offset: int
    size: int
    first_call: int
    last_call: int


@dataclasses.dataclass
class ModelDescription:
    name: str
    c_name: str
    kernels: List[Kernel]
    placements: List[Placement]
    arena_bytes: int
    lower_bound_bytes: int
    weight_bytes: int
    inputs: List[TensorRef]
    outputs: List[TensorRef]
    notes: List[str]
    sources: Dict[str, str]  # codegen/host/src file name -> C text
    header_name: str
    header: str

    @property
    def io_bytes(self) -> int:
        return sum(t.nbytes for t in self.inputs + self.outputs)

    @property
    def total_macs(self) -> int:
        return sum(k.macs for k in self.kernels)


def op_name(func_name: str, c_name: str) -> str:
    """``tvmgen_default_q3_depthwise_conv2d`` -> ``depthwise_conv2d``; ``tvmgen_default_fused_dense_add`` -> ``fused_dense_add``."""
    name = func_name
    prefix = f"tvmgen_{c_name}_"
    if name.startswith(prefix):
        name = name[len(prefix):]
    return re.sub(r"^q\d+_", "", name) or func_name


def count_macs(op: str, reads: Tuple[TensorRef, ...], output: TensorRef) -> int:
    """Multiply-accumulates of a weighted op: output elements x weights per output channel.

    The weight is the largest constant the call reads. Its output-channel dimension is its first
    (TFLite OHWI convolutions and OI dense weights, ONNX OIHW) or, for TFLite depthwise weights
    (1, KH, KW, C), its last; whichever matches the output's channel dimension (last or second).
    """
    if not any(word in op for word in _WEIGHTED_OPS):
        return 0
    weights = [t for t in reads if t.kind == "constant" and len(t.shape) >= 2]
    if not weights:
        return 0
    weight = max(weights, key=lambda t: int(np.prod(t.shape)))
    out_count = int(np.prod(output.shape, dtype=np.int64))
    channel_dims = {output.shape[-1]} | ({output.shape[1]} if len(output.shape) > 1 else set())
    candidates = [weight.shape[0], weight.shape[-1]] if weight.shape[0] > 1 else [weight.shape[-1]]
    channels = next((c for c in candidates if c in channel_dims), candidates[0])
    if channels <= 0:
        return 0
    return out_count * (int(np.prod(weight.shape, dtype=np.int64)) // channels)


def describe_mlf(path: Union[str, Path]) -> ModelDescription:
    """Read the report's model description from an MLF v7 archive written by ``tvmc compile``.
    Raises MLFError with a one-line reason when the archive lacks what a report needs."""
    metadata = mlf.read_metadata(path)
    ours = metadata.get("ours")
    if not ours or "memory" not in ours:
        raise mlf.MLFError(f"{path}: not written by microtvm-projects' tvmc compile (no arena plan in "
                           f"metadata.json); a report needs one: compile the model again")
    c = ours.get("c_name", metadata["c_name"])
    archive = mlf._Archive(path)
    try:
        graph_bytes = archive.read(f"executor-config/graph/{c}.graph")
        params_bytes = archive.read(f"parameters/{c}.params")
        sources = {}
        for rel in ours.get("sources", []):
            text = archive.read(rel)
            if text is not None:
                sources[Path(rel).name] = text.decode("utf-8")
        header_rel = ours.get("header", f"codegen/host/include/tvmgen_{c}.h")
        header = (archive.read(header_rel) or b"").decode("utf-8")
    finally:
        archive.close()
    if graph_bytes is None:
        raise mlf.MLFError(f"{path}: no executor-config/graph/{c}.graph; compile the model again")
    graph = json.loads(graph_bytes)
    constants: Dict[str, np.ndarray] = {}
    if params_bytes:
        with np.load(io.BytesIO(params_bytes)) as npz:
            constants = {name: npz[name] for name in npz.files}

    memory = ours["memory"]
    placements = [Placement(p["name"], p["kind"], p["offset"], p["size"], p["first_call"], p["last_call"])
                  for p in memory["placements"]]
    by_placement = {p.name: p for p in placements}
    input_names = [t["name"] for t in metadata["inputs"]]
    output_names = [t["name"] for t in metadata["outputs"]]

    # Entry shapes and dtypes of the graph (every non-workspace tensor has at least one entry).
    shapes: Dict[str, Tuple[Tuple[int, ...], str]] = {}
    row_ptr = graph["node_row_ptr"]
    for node_id, node in enumerate(graph["nodes"]):
        outs = node["attrs"]["args"] if node["op"] == "tvm_op" else [node["name"]]
        if node["op"] == "tvm_op":
            workspaces = {w["name"] for w in node["attrs"].get("workspaces", [])}
            written = [a for a in outs if a not in _read_names(node, graph) and a not in workspaces]
        else:
            written = outs
        for slot, entry in enumerate(range(row_ptr[node_id], row_ptr[node_id + 1])):
            if slot < len(written):
                shapes[written[slot]] = (tuple(graph["attrs"]["shape"][1][entry]), graph["attrs"]["dltype"][1][entry])

    def ref(name: str, workspace_sizes: Dict[str, int]) -> TensorRef:
        if name in workspace_sizes:
            place = by_placement.get(name)
            return TensorRef(name, "workspace", (workspace_sizes[name],), "uint8", workspace_sizes[name],
                             place.offset if place else -1)
        shape, dtype = shapes[name]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if name in input_names:
            kind = "input"
        elif name in output_names:
            kind = "output"
        elif name in constants:
            kind = "constant"
        else:
            kind = by_placement[name].kind if name in by_placement else "intermediate"
        place = by_placement.get(name)
        return TensorRef(name, kind, shape, dtype, nbytes, place.offset if place else -1)

    kernels: List[Kernel] = []
    for node in graph["nodes"]:
        if node["op"] != "tvm_op":
            continue
        attrs = node["attrs"]
        workspace_sizes = {w["name"]: int(w["size"]) for w in attrs.get("workspaces", [])}
        read_names = _read_names(node, graph)
        reads = tuple(ref(a, workspace_sizes) for a in attrs["args"] if a in read_names)
        writes = tuple(ref(a, workspace_sizes) for a in attrs["args"] if a not in read_names)
        op = op_name(attrs["func_name"], c)
        kernel = Kernel(len(kernels), attrs["func_name"], op, reads, writes, 0)
        kernels.append(dataclasses.replace(kernel, macs=count_macs(op, reads, kernel.output)))

    io_refs = {}
    for name in input_names + output_names:
        shape, dtype = shapes[name]
        io_refs[name] = TensorRef(name, "input" if name in input_names else "output", shape, dtype,
                                  int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, -1)
    return ModelDescription(
        name=metadata["model_name"], c_name=c, kernels=kernels, placements=placements,
        arena_bytes=int(memory["arena_bytes"]), lower_bound_bytes=int(memory["lower_bound_bytes"]),
        weight_bytes=int(memory["weight_bytes"]),
        inputs=[io_refs[n] for n in input_names], outputs=[io_refs[n] for n in output_names],
        notes=list(ours.get("notes", [])), sources=sources, header_name=Path(header_rel).name, header=header)


def _read_names(node: dict, graph: dict) -> set:
    """Names of the tensors a tvm_op node reads: kernels are in destination-passing style (reads,
    then writes, then workspaces, docs/mlf.md), and the node says how many reads there are."""
    attrs = node["attrs"]
    workspaces = {w["name"] for w in attrs.get("workspaces", [])}
    candidates = [a for a in attrs["args"] if a not in workspaces]
    return set(candidates[:int(attrs["num_inputs"])])
