"""Model Library Format reader: the metadata of v2..v7 archives (``read_metadata``) and safe
extraction (``extract_mlf``).

Template servers read archives through this module; it imports neither the compiler
(project_api.compiler) nor TVM, so reading an archive's metadata never loads the planner or TVM.
The layouts are specified in docs/mlf.md; the writer is project_api.compiler.mlf.
"""

from __future__ import annotations

import io
import json
import re
import struct
import tarfile
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from ..naming import c_identifier

SUPPORTED_READ_VERSIONS = range(2, 8)
OUR_KEY = "microtvm_projects"  # our additions to metadata.json live under this key only

PathLike = Union[str, Path]


class MLFError(ValueError):
    """An archive that is not a readable Model Library Format; the message says what is wrong."""



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


_RELAY_TENSOR = r"Tensor\[\(([^)]*)\),\s*(\w+)\]"
# Frontends name the weights they turn into Relay variables like this (the TFLite importer's
# "_param_N", printed "%v_param_N"); they are parameters, not model inputs.
_RELAY_PARAM_NAME = re.compile(r"^v?_param_\d+$")


def _relay_tensor(name: str, dims: str, dtype: str) -> dict:
    shape = [int(re.sub(r"(i64|L)$", "", d.strip())) for d in dims.split(",") if d.strip()]
    return {"name": name, "dtype": dtype, "shape": shape,
            "size": int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize}


def _io_from_relay(relay: str, param_names: List[str], header: str, c: str) -> tuple:
    """(inputs, outputs) of a legacy AOT archive: the ``@main`` signature of src/relay.txt minus
    its parameters (inputs), its return type (outputs); the C header, when there is one, names
    the inputs and outputs (struct members) and wins on names. Either may be None (unknown)."""
    match = re.search(r"def @main\((.*?)\)\s*(->\s*(.*?))?\s*\{", relay, re.S)
    inputs = outputs = None
    if match:
        params = set(param_names)
        inputs = [_relay_tensor(name, dims, dtype)
                  for name, dims, dtype in re.findall(r"%([\w.]+)\s*:\s*" + _RELAY_TENSOR, match.group(1))
                  if name not in params and not _RELAY_PARAM_NAME.match(name)]
        if match.group(3):
            returned = re.findall(_RELAY_TENSOR, match.group(3))
            names = ["output"] if len(returned) == 1 else [f"output{i}" for i in range(len(returned))]
            outputs = [_relay_tensor(n, dims, dtype) for n, (dims, dtype) in zip(names, returned)]
    for kind, found in (("inputs", inputs), ("outputs", outputs)):
        struct = re.search(rf"struct\s+tvmgen_{c}_{kind}\s*\{{([^}}]*)\}}", header)
        if not struct or found is None:
            continue
        members = re.findall(r"void\s*\*\s*(\w+)\s*;", struct.group(1))
        if len(members) == len(found):
            for tensor, member in zip(found, members):
                if c_identifier(tensor["name"]) != member:
                    tensor["name"] = member
    return inputs, outputs


def _fill_shapes(tensors: List[dict], described: Optional[List[dict]]) -> List[dict]:
    """Shapes the metadata leaves out (v6/v7 main lists only size and dtype), from the Relay
    signature when it describes the same tensors in the same order with the same sizes."""
    if not described or len(described) != len(tensors):
        return tensors
    for tensor, other in zip(tensors, described):
        if tensor["shape"] is None and other["size"] == tensor["size"] and other["dtype"] == tensor["dtype"]:
            tensor["shape"] = other["shape"]
    return tensors


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
        shapeless = any(t["shape"] is None for t in (inputs or []) + (outputs or []))
        if inputs is None or outputs is None or shapeless:
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
                inputs = graph_inputs if inputs is None else _fill_shapes(inputs, graph_inputs)
                outputs = graph_outputs if outputs is None else _fill_shapes(outputs, graph_outputs)
            elif "graph" in executors and (inputs is None or outputs is None):
                raise MLFError(f"{path}: executor-config/graph/graph.json is missing: a graph-executor archive needs "
                               "its graph JSON (or runtime-config/graph/graph.json) for its inputs, outputs and call order")
        shapeless = any(t["shape"] is None for t in (inputs or []) + (outputs or []))
        if inputs is None or outputs is None or shapeless:  # legacy AOT: the Relay text and the C header say
            params_blob = archive.read(f"parameters/{model_name}.params")
            relay_inputs, relay_outputs = _io_from_relay(
                (archive.read("src/relay.txt") or archive.read(f"src/{model_name}.relay") or b"").decode("utf-8", "replace"),
                _tvm_params_names(params_blob) or _npz_names(params_blob),
                (archive.read(f"codegen/host/include/tvmgen_{c}.h") or b"").decode("utf-8", "replace"), c)
            inputs = relay_inputs if inputs is None else _fill_shapes(inputs, relay_inputs)
            outputs = relay_outputs if outputs is None else _fill_shapes(outputs, relay_outputs)
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
