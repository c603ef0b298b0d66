"""Model Library Format: write v7 archives (``export_mlf``).

The layout and our additions are specified in docs/mlf.md. The C code comes from the one
static-runtime generator (runtime_gen.py); this module only lays files out and describes them.
Reading lives in project_api.mlf.reader (no compiler imports, for template servers); its names
are re-exported here for the compiler's callers.
"""

from __future__ import annotations

import datetime
import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ..mlf.reader import OUR_KEY, SUPPORTED_READ_VERSIONS, MLFError, extract_mlf, read_metadata  # noqa: F401
from .ir import CONSTANT, WORKSPACE, LoweredModel
from .planner import Plan, plan_model
from .runtime_gen import GENERATOR_VERSION, GeneratedRuntime, generate_runtime, state_bytes

MLF_VERSION = 7
EXECUTORS = ("aot", "graph")
DEVICE_CPU = 1  # DLPack kDLCPU, the "device" of every memory entry

PathLike = Union[str, Path]


# ---------------------------------------------------------------------------------------------
# Writing v7


def _tensor_info(model: LoweredModel, name: str) -> dict:
    tensor = model.tensors[name]
    return {"size": tensor.nbytes, "dtype": tensor.dtype, "shape": [int(d) for d in tensor.shape]}


def _workspace_bytes(model: LoweredModel, call) -> int:
    return sum(model.tensors[a].nbytes for a in dict.fromkeys(call.args) if model.tensors[a].kind == WORKSPACE)


def _used_constants(model: LoweredModel) -> List[str]:
    used = dict.fromkeys(a for call in model.calls for a in call.args if model.tensors[a].kind == CONSTANT)
    return list(used)


def memory_report(model: LoweredModel, plan: Plan) -> dict:
    """Arena, lower bound, weights and per-tensor placement: printed by tvmc compile, kept in metadata."""
    return {
        "arena_bytes": plan.arena_size,
        "lower_bound_bytes": plan.lower_bound,
        "state_bytes": state_bytes(model),  # persistent variables (SVDF state), outside the arena
        "alignment": plan.alignment,
        "weight_bytes": sum(model.tensors[n].nbytes for n in _used_constants(model)),
        "io_bytes": sum(model.tensors[n].nbytes for n in model.inputs + model.outputs),
        "placements": [
            {
                "name": p.name,
                "kind": p.kind,
                "offset": p.offset,
                "size": p.size,
                "first_call": p.first,
                "last_call": p.last,
            }
            for p in plan.placements
        ],
    }


def build_metadata(
    model: LoweredModel,
    plan: Plan,
    runtime: GeneratedRuntime,
    executor: str = "aot",
    export_datetime: Optional[str] = None,
) -> dict:
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    report = memory_report(model, plan)
    operator_functions: Dict[str, int] = {}
    for call in model.calls:
        operator_functions[call.func_name] = max(operator_functions.get(call.func_name, 0), _workspace_bytes(model, call))
    memory = {
        "functions": {
            "main": [
                {
                    "device": DEVICE_CPU,
                    "workspace_size_bytes": plan.arena_size,
                    "constants_size_bytes": report["weight_bytes"],
                    "io_size_bytes": report["io_bytes"],
                    "inputs": {n: _tensor_info(model, n) for n in model.inputs},
                    "outputs": {n: _tensor_info(model, n) for n in model.outputs},
                }
            ],
            "operator_functions": [
                {"function_name": name, "workspace": [{"device": DEVICE_CPU, "workspace_size_bytes": size}]}
                for name, size in operator_functions.items()
            ],
        }
    }
    if executor == "graph":
        graph = graph_json(model, plan)
        memory["sids"] = _graph_sids(model, graph)
    if export_datetime is None:
        export_datetime = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    return {
        "version": MLF_VERSION,
        "modules": {
            model.name: {
                "model_name": model.name,
                "export_datetime": export_datetime,
                "memory": memory,
                "target": [model.target],
                "executors": [executor],
                "style": "full-model",
                "external_dependencies": [],
                OUR_KEY: {
                    "generator_version": GENERATOR_VERSION,
                    "c_name": runtime.c_name,
                    "header": f"codegen/host/include/{runtime.header_name}",
                    "sources": [f"codegen/host/src/{s}" for s in runtime.sources],
                    "run_function": f"tvmgen_{runtime.c_name}_run",
                    "reset_function": f"tvmgen_{runtime.c_name}_reset",
                    "static_runtime": True,  # the generated tvmgen_<c>_run drives the model for either executor
                    "parameters_format": "npz",
                    "memory": report,
                    "notes": list(model.notes),
                },
            }
        },
    }


def graph_json(model: LoweredModel, plan: Plan) -> dict:
    """The kernel call sequence as graph-executor JSON, with our arena offsets beside storage ids.

    Inputs and constants are "null" nodes; each call is a "tvm_op" node whose inputs are the tensors
    it reads and whose outputs are the non-workspace tensors it writes. A tensor written again by a
    later call gets a new entry with the same storage id.
    """
    offsets = plan.offsets
    nodes: List[dict] = []
    row_ptr = [0]
    entry_of: Dict[str, list] = {}  # tensor name -> [node, index, version]
    entry_tensors: List[str] = []
    storage_ids: Dict[str, int] = {}

    def add_node(node: dict, outputs: List[str]) -> int:
        node_id = len(nodes)
        nodes.append(node)
        for index, name in enumerate(outputs):
            entry_of[name] = [node_id, index, 0]
            entry_tensors.append(name)
            storage_ids.setdefault(name, len(storage_ids))
        row_ptr.append(row_ptr[-1] + len(outputs))
        return node_id

    arg_nodes = []
    for name in model.inputs:
        arg_nodes.append(add_node({"op": "null", "name": name, "inputs": []}, [name]))
    for name in _used_constants(model):
        arg_nodes.append(add_node({"op": "null", "name": name, "inputs": []}, [name]))
    for index, call in enumerate(model.calls):
        reads = [a for a in call.args if a not in call.writes]
        writes = [a for a in call.args if a in call.writes and model.tensors[a].kind != WORKSPACE]
        workspaces = [a for a in call.args if model.tensors[a].kind == WORKSPACE]
        missing = [a for a in reads if a not in entry_of]
        if missing:
            raise ValueError(f"call {index} ({call.func_name}) reads {missing} before any call writes it")
        attrs = {
            "func_name": call.func_name,
            "num_inputs": str(len(reads)),
            "num_outputs": str(len(writes)),
            "flatten_data": "0",
            "args": list(call.args),  # the full C argument order, workspaces included
        }
        if workspaces:
            attrs["workspaces"] = [{"name": w, "offset": offsets[w], "size": model.tensors[w].nbytes} for w in workspaces]
        add_node(
            {"op": "tvm_op", "name": f"{call.func_name}_{index}", "attrs": attrs, "inputs": [entry_of[a] for a in reads]},
            writes,
        )
    tensors = [model.tensors[n] for n in entry_tensors]
    return {
        "nodes": nodes,
        "arg_nodes": arg_nodes,
        "heads": [entry_of[n] for n in model.outputs],
        "node_row_ptr": row_ptr,
        "attrs": {
            "storage_id": ["list_int", [storage_ids[n] for n in entry_tensors]],
            "shape": ["list_shape", [[int(d) for d in t.shape] for t in tensors]],
            "dltype": ["list_str", [t.dtype for t in tensors]],
            "device_index": ["list_int", [DEVICE_CPU] * len(tensors)],
            # ours: byte offset in the arena, -1 for caller buffers and constants
            "arena_offset": ["list_int", [offsets.get(n, -1) for n in entry_tensors]],
        },
    }


def _graph_sids(model: LoweredModel, graph: dict) -> List[dict]:
    storage = graph["attrs"]["storage_id"][1]
    sids: Dict[int, dict] = {}
    names = [node["name"] for node in graph["nodes"]]
    for entry, sid in enumerate(storage):
        if sid in sids:
            continue
        node = next(i for i in range(len(names)) if graph["node_row_ptr"][i] <= entry < graph["node_row_ptr"][i + 1])
        dims = graph["attrs"]["shape"][1][entry]
        size = int(np.prod(dims, dtype=np.int64)) * np.dtype(graph["attrs"]["dltype"][1][entry]).itemsize
        item = {"storage_id": sid, "size_bytes": size}
        if graph["nodes"][node]["op"] == "null":
            item["input_binding"] = names[node]
        sids[sid] = item
    return [sids[k] for k in sorted(sids)]


def _params_npz(model: LoweredModel) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{name: model.tensors[name].data for name in _used_constants(model)})
    return buf.getvalue()


def export_mlf(
    lowered: LoweredModel,
    out_path: PathLike,
    executor: str = "aot",
    plan: Optional[Plan] = None,
    runtime: Optional[GeneratedRuntime] = None,
    export_datetime: Optional[str] = None,
) -> Path:
    """Write ``lowered`` as an uncompressed MLF v7 tar at ``out_path``; returns the path."""
    if plan is None:
        plan = runtime.plan if runtime is not None else plan_model(lowered)
    if runtime is None:
        runtime = generate_runtime(lowered, plan)
    metadata = build_metadata(lowered, plan, runtime, executor, export_datetime)
    c = runtime.c_name
    files: Dict[str, bytes] = {
        "metadata.json": (json.dumps(metadata, indent=2) + "\n").encode(),
        f"codegen/host/include/{runtime.header_name}": runtime.header.encode(),
        f"parameters/{c}.params": _params_npz(lowered),
        f"src/{c}.relax": lowered.source_text.encode(),
        f"executor-config/graph/{c}.graph": (json.dumps(graph_json(lowered, plan), indent=1) + "\n").encode(),
    }
    for name, text in runtime.sources.items():
        files[f"codegen/host/src/{name}"] = text.encode()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlf-") as tmp:
        root = Path(tmp)
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        partial = out_path.with_name(out_path.name + ".partial")
        try:
            with tarfile.open(partial, "w") as tar:  # uncompressed, members under ./ as legacy archives
                tar.add(str(root), arcname=".", filter=_normalize_member)
            partial.replace(out_path)  # never leave a half-written archive under the real name
        finally:
            partial.unlink(missing_ok=True)
    return out_path


def _normalize_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info
