"""Legacy Model Library Format archives (TVM 0.8-0.18) translated, at project creation, into the
layout our own archives have (docs/mlf.md, "Legacy archives"), so every template builds them
unchanged:

* ``codegen/host/include/tvmgen_<c>.h``: our C interface (contract 2), from the one static-runtime
  generator (project_api.compiler.runtime_gen) and the arena planner;
* graph executor: ``<c>_runtime.c`` (weights, one planned arena, ``tvmgen_<c>_run``) calling
  ``<c>_legacy_calls.c``, one generated caller per graph node that packs a DLTensor per argument
  and calls the legacy packed kernel; the kernel's workspace is a planned arena tensor too;
* AOT executor: a generated ``tvmgen_<c>_run`` entry calling the archive's own AOT main
  (``tvmgen_<c>_run_model`` or its ``tvmgen_<c>_run``) with a static workspace pool;
* ``tvm_legacy_shim.{c,h}`` + ``tvm_legacy_kernels.h``: the TVM runtime functions the legacy
  kernels call (TVMBackendAllocWorkspace/FreeWorkspace on a static pool, TVMAPISetLastError);
* the legacy runtime glue (system-library registry, CRT AOT executor glue) and the archive's own
  header are kept under ``legacy/`` for reference, not built.

Anything that cannot be honoured raises ``MLFError`` with one line naming the member and why,
before any file is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import numpy as np

from .legacy_params import ParamsFormatError, load_params
from .reader import MLFError

SHIM_DIR = Path(__file__).resolve().parent / "legacy_shim"
SHIM_HEADERS = ("tvm_legacy_shim.h", "tvm_legacy_kernels.h")
SHIM_SOURCES = ("tvm_legacy_shim.c",)
SET_ASIDE_DIR = "legacy"  # model/legacy/: what the archive had that the project does not build
TRANSLATION_JSON = "legacy/translation.json"
WORKSPACE_ALIGNMENT = 16  # tvm_legacy_shim.c rounds every workspace block up to this

# Every TVM runtime identifier the shim (or the legacy sources themselves) define. Anything else
# a kernel references would be an undefined symbol at link time: refused at create instead.
KNOWN_RUNTIME_SYMBOLS = {
    "TVMBackendAllocWorkspace", "TVMBackendFreeWorkspace", "TVMAPISetLastError", "TVMGetLastError",
    "TVMValue", "TVM_DLL", "TVM_EXPORTS", "TVMBackendPackedCFunc", "TVMFuncRegistry", "TVMModule",
    "TVMSystemLibEntryPoint", "TVMArgTypeCode",
}
KNOWN_DL_SYMBOLS = {"DLTensor", "DLDevice", "DLContext", "DLDataType", "DLDeviceType", "DLDataTypeCode"}
_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"](?:tvm/runtime/[^">]*|dlpack/dlpack\.h)[">][^\n]*$', re.M)
_COMMENT_OR_STRING_RE = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_DL_CODE = {"i": "kDLInt", "u": "kDLUInt", "f": "kDLFloat"}


def _fail(where: str, member: str, reason: str) -> MLFError:
    return MLFError(f"{where}: {member}: {reason}")


@dataclasses.dataclass
class Translation:
    """What translate() made of an archive (also written to model/legacy/translation.json)."""

    executor: str
    c_name: str
    workspace_size_bytes: Optional[int]  # what the archive's metadata records
    arena_bytes: int  # the static memory our generated runtime uses for it
    lower_bound_bytes: int
    linked_params: bool
    set_aside: List[str]
    sources: List[str]


# ---- reading the archive ----------------------------------------------------------------------


def _module_meta(raw: dict) -> dict:
    if raw.get("version", 0) >= 6:
        modules = raw.get("modules") or {}
        return next(iter(modules.values())) if modules else {}
    return raw


def _operator_workspaces(raw: dict) -> Dict[str, int]:
    memory = _module_meta(raw).get("memory") or {}
    functions = memory.get("functions") if isinstance(memory, dict) else None
    result: Dict[str, int] = {}
    for entry in (functions or {}).get("operator_functions") or []:
        sizes = [int(w.get("workspace_size_bytes") or 0) for w in entry.get("workspace") or []]
        result[entry.get("function_name", "")] = max(sizes, default=0)
    return result


def _strip_comments_and_strings(text: str) -> str:
    return _COMMENT_OR_STRING_RE.sub(lambda m: " " if m.group(0)[0] in "/" else '""', text)


def _function_definitions(text: str) -> Dict[str, str]:
    """{name: parameter list text} of every function defined (not just declared) in ``text``."""
    code = _strip_comments_and_strings(text)
    found = {}
    for match in re.finditer(r"\b([A-Za-z_]\w*)\s*\(([^()]*)\)\s*\{", code):
        name = match.group(1)
        if name in ("if", "for", "while", "switch", "return", "sizeof"):
            continue
        found[name] = " ".join(match.group(2).split())
    return found


def _function_body(text: str, name: str) -> str:
    code = _strip_comments_and_strings(text)
    match = re.search(rf"\b{re.escape(name)}\s*\([^()]*\)\s*\{{", code)
    if not match:
        return ""
    depth, pos = 1, match.end()
    while depth and pos < len(code):
        depth += {"{": 1, "}": -1}.get(code[pos], 0)
        pos += 1
    return code[match.end() : pos]


def _is_runtime_glue(text: str) -> Optional[str]:
    """Why a legacy source is runtime glue the project replaces (None for kernels)."""
    code = _strip_comments_and_strings(text)
    if re.search(r"\bTVMSystemLibEntryPoint\s*\(\s*void\s*\)\s*\{", code):
        return "the system-library registry the legacy graph executor looked kernels up in"
    if "aot_executor" in text or re.search(r"\btvm_model_t\b", code):
        return "the glue of the legacy CRT AOT executor (tvm_model_t)"
    return None


class _Sources:
    """The archive's codegen/host/src/*.c, with the member names errors cite."""

    def __init__(self, model_dir: Path, where: str):
        self.where = where
        src = model_dir / "codegen" / "host" / "src"
        lib = model_dir / "codegen" / "host" / "lib"
        objects = sorted(p for p in lib.glob("*") if p.is_file()) if lib.is_dir() else []
        if objects:
            raise _fail(where, f"codegen/host/lib/{objects[0].name}",
                        "a compiled object (an llvm-target build); projects need C sources: compile the model again "
                        "with --target c")
        files = sorted(p for p in src.glob("*") if p.is_file()) if src.is_dir() else []
        other = [p for p in files if p.suffix not in (".c", ".h")]
        if other:
            raise _fail(where, f"codegen/host/src/{other[0].name}",
                        "not a C source; only C-target archives (.c kernels) can be built on a microcontroller")
        self.texts: Dict[str, str] = {}
        for path in files:
            if path.suffix == ".c":
                self.texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
        if not self.texts:
            raise _fail(where, "codegen/host/src", "holds no C sources (the kernels are missing)")
        self.glue = {name: why for name, why in ((n, _is_runtime_glue(t)) for n, t in self.texts.items()) if why}
        self.kernels = {n: t for n, t in self.texts.items() if n not in self.glue}
        self.definitions: Dict[str, Tuple[str, str]] = {}  # function -> (file, parameter list)
        for name, text in self.kernels.items():
            for func, params in _function_definitions(text).items():
                self.definitions.setdefault(func, (name, params))

    def check_runtime_symbols(self) -> None:
        for name, text in self.kernels.items():
            code = _strip_comments_and_strings(text)
            for symbol in sorted(set(re.findall(r"\bTVM\w*", code))):
                if symbol not in KNOWN_RUNTIME_SYMBOLS and symbol not in self.definitions:
                    raise _fail(self.where, f"codegen/host/src/{name}",
                                f"references {symbol}, a TVM runtime function the static shim does not provide "
                                f"(it provides {', '.join(sorted(KNOWN_RUNTIME_SYMBOLS - {'TVM_DLL', 'TVM_EXPORTS'}))}); "
                                "compile the model without the feature that needs it")
            for symbol in sorted(set(re.findall(r"\bDL[A-Z]\w*", code))):
                if symbol not in KNOWN_DL_SYMBOLS:
                    raise _fail(self.where, f"codegen/host/src/{name}",
                                f"uses {symbol}, a DLPack type the static shim does not define")

    def workspace_upper_bound(self, func: str) -> int:
        """Bytes of every TVMBackendAllocWorkspace in ``func`` (as if all were live at once)."""
        file, _ = self.definitions[func]
        body = _function_body(self.kernels[file], func)
        sizes = re.findall(r"TVMBackendAllocWorkspace\s*\([^,]*,[^,]*,\s*\(uint64_t\)\s*(\d+)", body)
        return sum(_align_up(int(s), WORKSPACE_ALIGNMENT) for s in sizes)


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _target_kind(target) -> str:
    """'c' for "c -keys=cpu -link-params=1 ..." and for a JSON target {"kind": "c", ...}."""
    text = str(target).strip()
    if text.startswith("{"):
        try:
            return str(json.loads(text).get("kind", ""))
        except (ValueError, AttributeError):
            return text
    return text.split(" ")[0]


def _check_target(meta: dict, where: str) -> None:
    for target in meta["target"]:
        if _target_kind(target) != "c":
            raise _fail(where, "metadata.json",
                        f"target '{target}' is not the C target; only archives compiled with --target c carry "
                        "sources a microcontroller project can build")


def _read_params(model_dir: Path, meta: dict, where: str) -> Tuple[Dict[str, np.ndarray], Optional[str]]:
    folder = model_dir / "parameters"
    candidates = [folder / f"{meta['model_name']}.params", folder / f"{meta['c_name']}.params"]
    candidates += sorted(folder.glob("*.params")) if folder.is_dir() else []
    for path in candidates:
        if path.is_file():
            member = f"parameters/{path.name}"
            try:
                return load_params(path.read_bytes()), member
            except ParamsFormatError as err:
                raise _fail(where, member, f"not a valid TVM params file ({err}); export the archive again")
    return {}, None


# ---- the graph executor -----------------------------------------------------------------------


def _graph(model_dir: Path, meta: dict, where: str) -> Tuple[dict, str]:
    for rel in (f"executor-config/graph/{meta['model_name']}.graph", f"executor-config/graph/{meta['c_name']}.graph",
                "executor-config/graph/graph.json", "runtime-config/graph/graph.json"):
        path = model_dir / rel
        if path.is_file():
            try:
                graph = json.loads(path.read_text(encoding="utf-8"))
                for key in ("nodes", "arg_nodes", "heads", "node_row_ptr", "attrs"):
                    graph[key]
                for key in ("storage_id", "shape", "dltype"):
                    graph["attrs"][key][1]
            except (ValueError, KeyError, TypeError, IndexError) as err:
                raise _fail(where, rel, f"not valid graph-executor JSON ({type(err).__name__}: {err})")
            return graph, rel
    raise _fail(where, "executor-config/graph/graph.json",
                "missing: a graph-executor archive needs its graph JSON (executor-config/graph/graph.json or "
                "runtime-config/graph/graph.json) to know the kernel call order")


def _linked_storage_ids(sources: _Sources) -> Optional[Set[int]]:
    if "_lookup_linked_param" not in sources.definitions:
        return None
    file, _ = sources.definitions["_lookup_linked_param"]
    body = _function_body(sources.kernels[file], "_lookup_linked_param")
    return {int(v) for v in re.findall(r"\bcase\s+(\d+)\s*:", body)}


def _relay_input_names(model_dir: Path, meta: dict) -> Optional[Set[str]]:
    from .reader import _io_from_relay

    relay = model_dir / "src" / "relay.txt"
    if not relay.is_file():
        return None
    inputs, _ = _io_from_relay(relay.read_text(encoding="utf-8", errors="replace"), [], "", meta["c_name"])
    return {t["name"] for t in inputs} if inputs else None


def _dl_dtype(dtype: str) -> Tuple[str, int]:
    if dtype == "bool":
        return "kDLUInt", 1
    np_dtype = np.dtype(dtype)
    return _DL_CODE[np_dtype.kind], np_dtype.itemsize * 8


def _graph_lowered(model_dir: Path, meta: dict, raw: dict, sources: _Sources, where: str):
    from ..compiler.ir import CONSTANT, INPUT, INTERMEDIATE, OUTPUT, WORKSPACE, KernelCall, LoweredModel, Tensor

    graph, graph_member = _graph(model_dir, meta, where)
    params, params_member = _read_params(model_dir, meta, where)
    linked = _linked_storage_ids(sources)
    nodes, row_ptr, attrs = graph["nodes"], graph["node_row_ptr"], graph["attrs"]
    shapes, dltypes, sids = attrs["shape"][1], attrs["dltype"][1], attrs["storage_id"][1]
    c = meta["c_name"]

    def entry_of(node: int, index: int = 0) -> int:
        return row_ptr[node] + index

    def shape_dtype(entry: int) -> Tuple[Tuple[int, ...], str]:
        return tuple(int(d) for d in shapes[entry]), str(dltypes[entry])

    tensors: Dict[str, Tensor] = {}
    entry_tensor: Dict[int, str] = {}  # entry -> tensor name (absent: a linked parameter)
    linked_entries: Dict[int, int] = {}  # entry -> storage id for _lookup_linked_param
    inputs: List[str] = []
    params_used: List[str] = []
    for node in graph["arg_nodes"]:
        name, entry = nodes[node]["name"], entry_of(node)
        shape, dtype = shape_dtype(entry)
        if name in params:
            data = params[name]
            if tuple(data.shape) != shape or str(data.dtype) != dtype:
                raise _fail(where, params_member, f"parameter '{name}' is {data.dtype}{list(data.shape)} but "
                            f"{graph_member} says {dtype}{list(shape)}")
            if linked is not None and sids[entry] in linked:
                linked_entries[entry] = sids[entry]  # already in flash inside the kernels' C
            else:
                tensors[name] = Tensor(name, shape, dtype, CONSTANT, np.array(data, order="C"))  # 0-d stays 0-d
                entry_tensor[entry] = name
            params_used.append(name)
        elif linked is not None and sids[entry] in linked:
            linked_entries[entry] = sids[entry]
            params_used.append(name)
        else:
            if name in tensors:
                raise _fail(where, graph_member, f"two argument nodes are named '{name}'")
            tensors[name] = Tensor(name, shape, dtype, INPUT)
            entry_tensor[entry] = name
            inputs.append(name)
    if not inputs:
        raise _fail(where, graph_member, "every argument node is a parameter: the model has no input")
    # The Relay @main signature names the real inputs: any other argument node is a parameter
    # that neither the params file nor the kernels (-link-params) provide.
    relay_inputs = _relay_input_names(model_dir, meta)
    unknown = [n for n in inputs if relay_inputs is not None and n not in relay_inputs]
    reader_inputs = {t["name"] for t in meta["inputs"]}
    unknown += [n for n in inputs if n not in reader_inputs and n not in unknown]
    extra = [t["name"] for t in meta["inputs"] if t["name"] not in inputs]
    if extra:  # what the reader took for inputs are parameters the kernels link in
        raise _fail(where, params_member or f"parameters/{meta['model_name']}.params",
                    f"{'lacks' if params_member else 'is missing, so it cannot name'} parameter '{extra[0]}', which "
                    "the metadata then takes for a model input; export the archive again with its parameters")
    if unknown:
        raise _fail(where, params_member or f"parameters/{meta['model_name']}.params",
                    f"parameter '{unknown[0]}' ({graph_member} argument node) is neither in the params file nor linked "
                    "into the kernels (_lookup_linked_param); export the archive again with its parameters")

    heads = graph["heads"]
    outputs: List[str] = []
    for index, (node, out_index, *_version) in enumerate(heads):
        entry = entry_of(node, out_index)
        if nodes[node]["op"] == "null" or entry in (entry_of(*h[:2]) for h in heads[:index]):
            raise _fail(where, graph_member, f"output {index} is a model input, a parameter or a repeated output; "
                        "only kernel results can be outputs of the static runtime")
        # The names the metadata gives (v6/v7 list them in main) are what model_glue.c uses.
        described = [t["name"] for t in meta["outputs"]]
        name = described[index] if len(described) == len(heads) else ("output" if len(heads) == 1 else f"output{index}")
        shape, dtype = shape_dtype(entry)
        tensors[name] = Tensor(name, shape, dtype, OUTPUT)
        entry_tensor[entry] = name
        outputs.append(name)

    op_workspaces = _operator_workspaces(raw)
    calls: List[KernelCall] = []
    adapters: List[str] = []
    prototypes: Dict[str, str] = {}
    for node_id, node in enumerate(nodes):
        if node["op"] == "null":
            continue
        if node["op"] != "tvm_op":
            raise _fail(where, graph_member, f"node {node_id} has op '{node['op']}'; only tvm_op nodes can be called")
        node_attrs = node.get("attrs") or {}
        func = node_attrs.get("func_name", "")
        num_outputs = int(node_attrs.get("num_outputs", 1))
        in_entries = [entry_of(i[0], i[1]) for i in node["inputs"]]
        out_entries = [entry_of(node_id, k) for k in range(num_outputs)]
        for entry in out_entries:
            if entry not in entry_tensor:
                name = f"sid{sids[entry]}_entry{entry}"
                shape, dtype = shape_dtype(entry)
                tensors[name] = Tensor(name, shape, dtype, INTERMEDIATE)
                entry_tensor[entry] = name
        for entry in in_entries:
            if entry not in entry_tensor and entry not in linked_entries:
                raise _fail(where, graph_member, f"node {node_id} ({func}) reads entry {entry} before it is written")
        index = len(calls)
        if func == "__nop":
            if len(in_entries) != 1 or len(out_entries) != 1:
                raise _fail(where, graph_member, f"node {node_id} is a __nop with {len(in_entries)} inputs")
            workspace = 0
        else:
            if func not in sources.definitions:
                raise _fail(where, graph_member, f"node {node_id} calls {func or '(no func_name)'}, which no source in "
                            "codegen/host/src defines")
            prototypes[func] = sources.definitions[func][1]
            workspace = op_workspaces.get(func)
            if workspace is None:
                workspace = sources.workspace_upper_bound(func)
        ws_name = None
        if workspace:
            ws_name = f"workspace_call{index}"
            tensors[ws_name] = Tensor(ws_name, (_align_up(workspace, WORKSPACE_ALIGNMENT),), "uint8", WORKSPACE)
        args = [entry_tensor[e] for e in in_entries + out_entries if e in entry_tensor]
        writes = [entry_tensor[e] for e in out_entries]
        if ws_name:
            args.append(ws_name)
            writes.append(ws_name)
        adapter = f"tvmgen_{c}_legacy_call{index}"
        calls.append(KernelCall(adapter, args, writes))
        adapters.append(_adapter_source(adapter, func, in_entries + out_entries, entry_tensor, linked_entries,
                                        shape_dtype, tensors, ws_name, c))
    if not calls:
        raise _fail(where, graph_member, "has no tvm_op node: there is nothing to run")
    if "_lookup_linked_param" in sources.definitions and linked_entries:
        prototypes["_lookup_linked_param"] = sources.definitions["_lookup_linked_param"][1]
    kernels_c = _calls_source(c, meta["model_name"], prototypes, bool(linked_entries), adapters)
    lowered = LoweredModel(meta["model_name"], tensors, inputs, outputs, calls, kernels_c,
                           target=" ".join(meta["target"]))
    return lowered, bool(linked_entries)


def _c_array(values) -> str:
    return ", ".join(str(int(v)) for v in values) or "1"


def _adapter_source(adapter, func, entries, entry_tensor, linked_entries, shape_dtype, tensors, ws_name, c) -> str:
    from ..compiler.runtime_gen import c_type

    params = []
    for name in [entry_tensor[e] for e in entries if e in entry_tensor] + ([ws_name] if ws_name else []):
        params.append(f"{c_type(tensors[name].dtype)}* a{len(params)}")
    lines = [f"int32_t {adapter}({', '.join(params) or 'void'}) {{"]
    if func == "__nop":  # the graph executor's alias for a reshape: our tensors are distinct buffers
        nbytes = tensors[entry_tensor[entries[1]]].nbytes
        lines += [
            "  const uint8_t* from = (const uint8_t*)a0;",
            "  uint8_t* to = (uint8_t*)a1;",
            "  uint32_t i;",
            f"  for (i = 0; i < {nbytes}u; ++i) to[i] = from[i];",
            "  return 0;",
            "}",
        ]
        return "\n".join(lines)
    count = len(entries)
    for k, entry in enumerate(entries):
        shape, _ = shape_dtype(entry)
        lines.append(f"  static const int64_t shape{k}[{max(len(shape), 1)}] = {{{_c_array(shape)}}};")
    lines += [
        f"  DLTensor tensors[{count}];",
        f"  TVMValue values[{count}];",
        f"  int32_t type_codes[{count}];",
        "  TVMValue ret_value;",
        "  int ret_code = kTVMNullptr;",
        "  int32_t status;",
    ]
    arg = 0
    for k, entry in enumerate(entries):
        shape, dtype = shape_dtype(entry)
        code, bits = _dl_dtype(dtype)
        if entry in linked_entries:
            lines.append(f"  void* param{k} = tvmgen_{c}_linked_param({linked_entries[entry]});")
            lines.append(f"  if (param{k} == NULL) return -1;")
            data = f"param{k}"
        else:
            data = f"(void*)a{arg}"
            arg += 1
        lines.append(f"  tvm_legacy_shim_tensor(&tensors[{k}], &values[{k}], &type_codes[{k}], {data}, {len(shape)}, "
                     f"shape{k}, {code}, {bits});")
    if ws_name:
        lines.append(f"  tvm_legacy_shim_workspace_begin(a{arg}, {tensors[ws_name].nbytes}u);")
    else:
        lines.append("  tvm_legacy_shim_workspace_begin(NULL, 0u);")
    lines += [
        f"  status = {func}((void*)values, (void*)type_codes, {count}, (void*)&ret_value, (void*)&ret_code, (void*)0);",
        "  tvm_legacy_shim_workspace_end();",
        "  (void)ret_value;",
        "  return status;",
        "}",
    ]
    return "\n".join(lines)


def _calls_source(c: str, model_name: str, prototypes: Dict[str, str], linked: bool, adapters: List[str]) -> str:
    lines = [
        f"/* Generated by microtvm-projects from the graph JSON of legacy archive {model_name!r}. Do not edit.",
        " * One caller per graph node, in call order: it describes each argument as a DLTensor, points the",
        " * shim's workspace allocator at the node's planned arena slice and calls the legacy packed kernel. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        '#include "tvm_legacy_shim.h"',
        "",
        "/* The legacy kernels, declared exactly as their sources define them. */",
    ]
    lines += [f"int32_t {name}({params});" for name, params in prototypes.items()]
    lines.append("")
    if linked:
        lines += [
            "/* Parameters linked into the kernels' C (-link-params) are found by storage id. */",
            f"static void* tvmgen_{c}_linked_param(int64_t storage_id) {{",
            "  TVMValue key;",
            "  int key_code = kTVMArgInt;",
            "  TVMValue ret_value;",
            "  int ret_code = kTVMNullptr;",
            "  key.v_int64 = storage_id;",
            "  if (_lookup_linked_param((void*)&key, (void*)&key_code, 1, (void*)&ret_value, (void*)&ret_code, "
            "(void*)0) != 0) {",
            "    return NULL;",
            "  }",
            "  return tvm_legacy_shim_returned_handle(&ret_value, ret_code);",
            "}",
            "",
        ]
    for adapter in adapters:
        lines += [adapter, ""]
    return "\n".join(lines)


# ---- writing the translation ------------------------------------------------------------------


def _rewrite_includes(text: str) -> str:
    """The legacy sources' TVM runtime includes become the one flat shim header (once)."""
    seen = []

    def replace(match):
        seen.append(match)
        return '#include "tvm_legacy_kernels.h"' if len(seen) == 1 else "/* (TVM runtime header: see above) */"

    return _INCLUDE_RE.sub(replace, text)


def is_legacy(metadata: dict) -> bool:
    """An archive we did not write (no microtvm_projects key): it needs translating."""
    return metadata.get("ours") is None


def translate(model_dir: Path, metadata: dict, where: str) -> Translation:
    """Translate the extracted legacy archive in ``model_dir`` (read_metadata's ``metadata``) in
    place; raises MLFError (one line naming the member) before writing anything it cannot honour."""
    from ..compiler.errors import CompileError
    from ..compiler.runtime_gen import generate_runtime

    model_dir = Path(model_dir)
    has_graph = any((model_dir / rel).exists() for rel in ("executor-config/graph", "runtime-config/graph"))
    executor = (metadata["executors"] or ["graph" if has_graph else "aot"])[0]
    if executor not in ("graph", "aot"):
        raise _fail(where, "metadata.json", f"executor '{executor}' is neither graph nor aot")
    _check_target(metadata, where)
    sources = _Sources(model_dir, where)
    sources.check_runtime_symbols()
    c = metadata["c_name"]
    include = model_dir / "codegen" / "host" / "include"
    src = model_dir / "codegen" / "host" / "src"
    if executor != "graph":
        from .legacy_aot import translate_aot

        return translate_aot(model_dir, metadata, sources, where)
    lowered, linked = _graph_lowered(model_dir, metadata, metadata["raw"], sources, where)
    try:
        runtime = generate_runtime(lowered)
    except CompileError as err:
        raise _fail(where, "executor-config/graph", str(err))
    set_aside = _set_aside(model_dir, sources, include / runtime.header_name)
    _install_shim(model_dir, sources)
    (include / runtime.header_name).write_text(runtime.header, encoding="utf-8")
    (src / f"{c}_runtime.c").write_text(runtime.sources[f"{c}_runtime.c"], encoding="utf-8")
    (src / f"{c}_legacy_calls.c").write_text(lowered.kernels_c, encoding="utf-8")
    translation = Translation("graph", c, metadata.get("workspace_size_bytes"), runtime.plan.arena_size,
                              runtime.plan.lower_bound, linked, set_aside,
                              sorted(p.name for p in src.glob("*.c")))
    _write_translation(model_dir, translation)
    return translation


def _set_aside(model_dir: Path, sources: _Sources, *extra: Path) -> List[str]:
    aside = model_dir / SET_ASIDE_DIR
    moved = []
    for name, why in sources.glue.items():
        aside.mkdir(exist_ok=True)
        shutil.move(str(model_dir / "codegen" / "host" / "src" / name), str(aside / name))
        moved.append(f"codegen/host/src/{name}: {why}")
    for path in extra:
        if path.is_file():
            aside.mkdir(exist_ok=True)
            shutil.move(str(path), str(aside / path.name))
            moved.append(f"codegen/host/include/{path.name}: the archive's own header (replaced)")
    return moved


def _install_shim(model_dir: Path, sources: _Sources) -> None:
    include = model_dir / "codegen" / "host" / "include"
    src = model_dir / "codegen" / "host" / "src"
    include.mkdir(parents=True, exist_ok=True)
    for name in SHIM_HEADERS:
        shutil.copy2(SHIM_DIR / name, include / name)
    for name in SHIM_SOURCES:
        shutil.copy2(SHIM_DIR / name, src / name)
    for name, text in sources.kernels.items():
        (src / name).write_text(_rewrite_includes(text), encoding="utf-8")


def _write_translation(model_dir: Path, translation: Translation) -> None:
    path = model_dir / TRANSLATION_JSON
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(translation), indent=2) + "\n", encoding="utf-8")


def translate_if_legacy(model_dir: Path, where: str) -> Optional[Translation]:
    """The one call project generation makes after extracting an archive: translate it when it is
    a legacy one (our own archives are left alone)."""
    from .reader import read_metadata

    metadata = read_metadata(model_dir)
    if not is_legacy(metadata):
        return None
    return translate(model_dir, metadata, where)
