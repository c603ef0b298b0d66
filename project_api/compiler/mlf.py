"""Model Library Format: write v7 archives (``export_mlf``), read the metadata of v2..v7 (``read_metadata``).

The layout and our additions are specified in docs/mlf.md. The C code comes from the one
static-runtime generator (runtime_gen.py); this module only lays files out and describes them.
"""

from __future__ import annotations

import datetime
import io
import json
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ..naming import c_identifier
from .ir import CONSTANT, WORKSPACE, LoweredModel
from .planner import Plan, plan_model
from .runtime_gen import GENERATOR_VERSION, GeneratedRuntime, generate_runtime, state_bytes

MLF_VERSION = 7
SUPPORTED_READ_VERSIONS = range(2, 8)
EXECUTORS = ("aot", "graph")
OUR_KEY = "microtvm_projects"  # our additions to metadata.json live under this key only
DEVICE_CPU = 1  # DLPack kDLCPU, the "device" of every memory entry

PathLike = Union[str, Path]


class MLFError(ValueError):
    """An archive that is not a readable Model Library Format; the message says what is wrong."""


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


# ---------------------------------------------------------------------------------------------
# Reading v2..v7


def _one_line(err: Exception) -> str:
    """tarfile's "r:*" errors list every compression it tried, one per line: keep the last."""
    lines = [line.strip(" -") for line in str(err).strip().splitlines() if line.strip(" -")]
    return lines[-1] if lines else type(err).__name__


class _Archive:
    """Uniform read access to an MLF tar or an extracted MLF directory."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._tar = None
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such Model Library Format archive or directory")
        if self.path.is_dir():
            return
        try:
            self._tar = tarfile.open(self.path, "r:*")
            self._names = {m.name[2:] if m.name.startswith("./") else m.name: m for m in self._tar.getmembers()}
        except (tarfile.TarError, EOFError, OSError) as err:
            raise MLFError(f"{self.path}: not a readable tar archive ({_one_line(err)}); export it again with tvmc compile")

    def read(self, rel: str) -> Optional[bytes]:
        if self._tar is None:
            file = self.path / rel
            return file.read_bytes() if file.is_file() else None
        member = self._names.get(rel)
        if member is None or not member.isfile():
            return None
        try:
            return self._tar.extractfile(member).read()
        except (tarfile.TarError, EOFError, OSError) as err:
            raise MLFError(f"{self.path}: cannot read {rel} ({_one_line(err)}); the archive is damaged")

    def close(self):
        if self._tar is not None:
            self._tar.close()


def _tvm_params_names(data: Optional[bytes]) -> List[str]:
    """Names in a legacy TVM .params blob (magic, reserved, vector<string> names, ...)."""
    if not data or len(data) < 24:
        return []
    magic, _reserved, count = struct.unpack_from("<QQQ", data, 0)
    if magic != 0xF7E58D4F05049CB7:
        return []
    names, pos = [], 24
    for _ in range(count):
        (length,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        names.append(data[pos : pos + length].decode("utf-8", "replace"))
        pos += length
    return names


def _npz_names(data: Optional[bytes]) -> List[str]:
    try:
        with np.load(io.BytesIO(data)) as npz:
            return list(npz.files)
    except Exception:
        return []


def _io_from_graph(graph: dict, param_names: List[str]) -> tuple:
    """(inputs, outputs) as lists of {name, dtype, shape, size} from graph-executor JSON."""
    attrs, row_ptr, nodes = graph["attrs"], graph["node_row_ptr"], graph["nodes"]

    def describe(entry: int, name: str) -> dict:
        shape = [int(d) for d in attrs["shape"][1][entry]]
        dtype = attrs["dltype"][1][entry]
        return {"name": name, "dtype": dtype, "shape": shape, "size": int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize}

    params = set(param_names)
    inputs = [describe(row_ptr[n], nodes[n]["name"]) for n in graph["arg_nodes"] if nodes[n]["name"] not in params]
    outputs = []
    for index, (node, out_index, _version) in enumerate(graph["heads"]):
        name = "output" if len(graph["heads"]) == 1 else f"output{index}"
        outputs.append(describe(row_ptr[node] + out_index, name))
    return inputs, outputs


def _io_from_main(entries: dict) -> List[dict]:
    result = []
    for name, info in entries.items():
        dtype = info.get("dtype")
        shape = info.get("shape")
        result.append({"name": name, "dtype": dtype, "shape": list(shape) if shape is not None else None, "size": info.get("size")})
    return result


def read_metadata(path: PathLike, module: Optional[str] = None) -> dict:
    """Read an MLF (tar or extracted directory) of version 2..7 into one normalized dict:

    ``{"version", "model_name", "c_name", "executors", "target" (list of str), "workspace_size_bytes",
    "constants_size_bytes", "io_size_bytes", "inputs", "outputs" (lists of {name, dtype, shape, size};
    shape None when the archive does not say), "ours" (our additions or None), "raw" (metadata.json)}``.
    Raises MLFError with a one-line reason for anything else.
    """
    archive = _Archive(path)
    try:
        raw_bytes = archive.read("metadata.json")
        if raw_bytes is None:
            raise MLFError(f"{path}: no metadata.json; this is not a Model Library Format archive")
        try:
            raw = json.loads(raw_bytes)
        except ValueError as err:
            raise MLFError(f"{path}: metadata.json is not valid JSON ({err})")
        if not isinstance(raw, dict) or not isinstance(raw.get("version"), int):
            raise MLFError(f"{path}: metadata.json has no integer 'version'")
        version = raw["version"]
        if version not in SUPPORTED_READ_VERSIONS:
            raise MLFError(
                f"{path}: Model Library Format version {version} is not supported (this reads versions 2 to 7)"
            )
        if version >= 6:
            modules = raw.get("modules") or {}
            if not modules:
                raise MLFError(f"{path}: metadata.json (version {version}) lists no modules")
            key = module if module is not None else next(iter(modules))
            if key not in modules:
                raise MLFError(f"{path}: no module {key!r}; it has {', '.join(modules)}")
            meta = modules[key]
        else:
            meta = raw
        model_name = meta.get("model_name") or (module or "default")
        c = c_identifier(model_name)
        executors = list(meta.get("executors") or meta.get("runtimes") or [])
        target = meta.get("target")
        if isinstance(target, dict):  # v5 and older: {"<device type>": "target string"}
            target = list(target.values())
        elif isinstance(target, str):
            target = [target]
        memory = meta.get("memory") or {}
        main: dict = {}
        if isinstance(memory, dict):
            mains = (memory.get("functions") or {}).get("main") or [{}]
            main = mains[0]
        inputs = _io_from_main(main["inputs"]) if "inputs" in main else None
        outputs = _io_from_main(main["outputs"]) if "outputs" in main else None
        if inputs is None or outputs is None:
            graph_bytes = None
            for rel in (f"executor-config/graph/{model_name}.graph", f"executor-config/graph/{c}.graph",
                        "executor-config/graph/graph.json", "runtime-config/graph/graph.json"):
                graph_bytes = archive.read(rel)
                if graph_bytes is not None:
                    break
            if graph_bytes is not None:
                try:
                    graph = json.loads(graph_bytes)
                    params_blob = archive.read(f"parameters/{model_name}.params")
                    params = _tvm_params_names(params_blob) or _npz_names(params_blob)
                    graph_inputs, graph_outputs = _io_from_graph(graph, params)
                except (ValueError, KeyError, IndexError, TypeError) as err:
                    raise MLFError(f"{path}: the graph JSON is malformed ({err})")
                inputs = graph_inputs if inputs is None else inputs
                outputs = graph_outputs if outputs is None else outputs
        workspace = main.get("workspace_size_bytes")
        if workspace is None and isinstance(memory, list):  # v2: only a storage list
            workspace = sum(s.get("size_bytes", 0) for s in memory if "input_binding" not in s)
        return {
            "version": version,
            "model_name": model_name,
            "c_name": c,
            "executors": executors,
            "target": list(target or []),
            "workspace_size_bytes": workspace,
            "constants_size_bytes": main.get("constants_size_bytes"),
            "io_size_bytes": main.get("io_size_bytes"),
            "inputs": inputs or [],
            "outputs": outputs or [],
            "ours": meta.get(OUR_KEY),
            "raw": raw,
        }
    finally:
        archive.close()


def extract_mlf(path: PathLike, dest: PathLike) -> Path:
    """Extract an MLF tar into ``dest`` refusing members that would land outside it."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar.getmembers():
                target = (dest / member.name).resolve()
                if dest != target and dest not in target.parents:
                    raise MLFError(f"{path}: member {member.name!r} would be written outside {dest}")
                if not (member.isfile() or member.isdir()):
                    raise MLFError(f"{path}: member {member.name!r} is not a regular file or directory")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest)
    except (tarfile.TarError, EOFError) as err:
        raise MLFError(f"{path}: not a readable tar archive ({_one_line(err)})")
    return dest
