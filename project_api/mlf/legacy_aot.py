"""Legacy AOT archives (TVM 0.8-0.18) translated into our layout (see legacy.py for the whole picture).

The archive's own AOT main runs the model; what it lacks is our entry point and a runtime:

* TVM 0.8 (``tvmgen_<c>_run_model``, unpacked ``(void* in..., void* out...)`` or packed): a
  generated ``tvmgen_<c>_run`` calls it with the caller's buffers (packed: as DLTensors);
* TVM 0.9+ with ``--interface-api=c`` (the archive defines ``tvmgen_<c>_run`` and ships
  ``tvmgen_<c>.h``): its entry and header are renamed ``tvmgen_<c>_legacy_run`` /
  ``tvmgen_<c>_legacy.h`` and our generated ``tvmgen_<c>_run`` calls it; with USMP
  (``struct tvmgen_<c>_workspace_pools``) each pool is a static array sized from the metadata.

Workspace: the shim's default pool, one static array of the metadata's ``workspace_size_bytes``
(what legacy templates sized their workspace with), inside the generated entry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List

from ..naming import c_member_name
from .reader import MLFError


def _pool_sizes(metadata: dict, header: str, c: str, where: str) -> Dict[str, int]:
    """USMP pools: {struct member: bytes} from the header's workspace_pools struct and the metadata."""
    struct = re.search(rf"struct\s+tvmgen_{c}_workspace_pools\s*\{{([^}}]*)\}}", header)
    if not struct:
        return {}
    members = re.findall(r"void\s*\*\s*(\w+)\s*;", struct.group(1))
    raw = metadata["raw"]
    meta = next(iter((raw.get("modules") or {}).values()), raw) if raw.get("version", 0) >= 6 else raw
    pools = {}
    for pool in meta.get("workspace_pools") or meta.get("pools") or []:
        name = pool.get("pool_name") or pool.get("name")
        size = pool.get("size_bytes") or pool.get("workspace_size_bytes")
        if name is not None and size is not None:
            pools[re.sub(r"\W", "_", str(name))] = int(size)
    for macro, size in re.findall(rf"#define\s+TVMGEN_{c.upper()}_(\w+)_WORKSPACE_POOL_SIZE\s+(\d+)", header):
        for member in members:
            if member.upper() == macro:
                pools.setdefault(member, int(size))
    sizes = {}
    for member in members:
        size = pools.get(member)
        if size is None and len(members) == 1 and metadata.get("workspace_size_bytes") is not None:
            size = int(metadata["workspace_size_bytes"])
        if size is None:
            raise MLFError(f"{where}: metadata.json: no size for USMP workspace pool '{member}' "
                           f"(declared in codegen/host/include/tvmgen_{c}.h); the static pool cannot be sized")
        sizes[member] = size
    return sizes


def _static_pool(name: str, size: int) -> List[str]:
    return [
        f"static union {{ uint8_t bytes[{max(size, 1)}]; double d; uint64_t u; void* p; }} {name} TVM_LEGACY_ALIGN16;",
    ]


def translate_aot(model_dir: Path, metadata: dict, sources, where: str):
    from ..compiler.errors import CompileError
    from ..compiler.ir import INPUT, OUTPUT, LoweredModel, Tensor
    from ..compiler.planner import Plan
    from ..compiler.runtime_gen import generate_header
    from .legacy import Translation, _dl_dtype, _fail, _install_shim, _operator_workspaces, _set_aside, _write_translation

    c = metadata["c_name"]
    include = model_dir / "codegen" / "host" / "include"
    src = model_dir / "codegen" / "host" / "src"
    workspace = metadata.get("workspace_size_bytes")
    if workspace is None:
        raise _fail(where, "metadata.json", "records no workspace_size_bytes, so the static workspace pool of the "
                    "AOT archive cannot be sized; export the archive again")
    workspace = int(workspace)
    if not metadata["inputs"] or not metadata["outputs"]:
        raise _fail(where, "metadata.json", "describes no inputs or outputs, and neither does src/relay.txt (no "
                    "@main return type) nor the C header")
    tensors = {}
    for kind, group in ((INPUT, metadata["inputs"]), (OUTPUT, metadata["outputs"])):
        for t in group:
            if t.get("shape") is None or t.get("dtype") is None:
                raise _fail(where, "metadata.json", f"{kind} '{t['name']}' has no shape or dtype, which the C interface "
                            "needs")
            tensors[t["name"]] = Tensor(t["name"], tuple(t["shape"]), t["dtype"], kind)
    inputs = [t["name"] for t in metadata["inputs"]]
    outputs = [t["name"] for t in metadata["outputs"]]
    io_model = LoweredModel(metadata["model_name"], tensors, inputs, outputs, [], "")

    archive_header_path = include / f"tvmgen_{c}.h"
    archive_header = archive_header_path.read_text(encoding="utf-8", errors="replace") if archive_header_path.is_file() else ""
    run, run_model = f"tvmgen_{c}_run", f"tvmgen_{c}_run_model"
    members_in = [c_member_name(n) for n in inputs]
    members_out = [c_member_name(n) for n in outputs]
    body: List[str] = []
    declarations: List[str] = []
    includes = [f'#include "tvmgen_{c}.h"']
    pools: Dict[str, int] = {}
    renamed = None
    if run in sources.definitions:
        params = [p for p in sources.definitions[run][1].split(",") if p.strip()]
        pools = _pool_sizes(metadata, archive_header, c, where)
        if pools:  # USMP planned the model's tensors into the pools: the default pool is only for
            # kernels that still take scratch from TVMBackendAllocWorkspace (the largest one's)
            allocating = any("TVMBackendAllocWorkspace" in text for text in sources.kernels.values())
            workspace = max(_operator_workspaces(metadata["raw"]).values(), default=0) if allocating else 0
        if len(params) != 2 + (1 if pools else 0):
            raise _fail(where, f"codegen/host/src/{sources.definitions[run][0]}",
                        f"{run} takes {len(params)} parameters; expected (inputs, outputs"
                        f"{', workspace_pools' if pools else ''})")
        renamed = f"tvmgen_{c}_legacy_run"
        pattern = re.compile(rf"\b{run}\b(?=\s*\()")
        for name in list(sources.kernels):
            sources.kernels[name] = pattern.sub(renamed, sources.kernels[name]).replace(
                f'"tvmgen_{c}.h"', f'"tvmgen_{c}_legacy.h"')
        if not archive_header:
            raise _fail(where, f"codegen/host/include/tvmgen_{c}.h", f"missing, but the sources define {run} with its "
                        "structs")
        legacy_header = pattern.sub(renamed, archive_header)
        # The archive's header (renamed) declares its structs and entry; ours declares the same structs.
        includes = [f'#include "tvmgen_{c}_legacy.h"']
        if pools:
            body.append(f"  struct tvmgen_{c}_workspace_pools pools;")
            body += [f"  pools.{m} = pool_{m}.bytes;" for m in pools]
            body.append(f"  return {renamed}(inputs, outputs, &pools);")
        else:
            body.append(f"  return {renamed}(inputs, outputs);")
    elif run_model in sources.definitions:
        file, param_text = sources.definitions[run_model]
        params = [p for p in param_text.split(",") if p.strip() and p.strip() != "void"]
        declarations.append(f"int32_t {run_model}({param_text});")
        packed = len(params) == 6 and ("TVMValue" in params[0] or "args" in params[0]) and len(inputs) + len(outputs) != 6
        if packed:
            count = len(inputs) + len(outputs)
            body += [f"  DLTensor tensors[{count}];", f"  TVMValue values[{count}];", f"  int32_t type_codes[{count}];",
                     "  TVMValue ret_value;", "  int ret_code = kTVMNullptr;"]
            for k, (struct, member, name) in enumerate(
                    [("inputs", m, n) for m, n in zip(members_in, inputs)]
                    + [("outputs", m, n) for m, n in zip(members_out, outputs)]):
                shape = tensors[name].shape
                code, bits = _dl_dtype(tensors[name].dtype)
                body.insert(0, f"  static const int64_t shape{k}[{max(len(shape), 1)}] = "
                               f"{{{', '.join(str(int(d)) for d in shape) or '1'}}};")
                body.append(f"  tvm_legacy_shim_tensor(&tensors[{k}], &values[{k}], &type_codes[{k}], {struct}->{member}, "
                            f"{len(shape)}, shape{k}, {code}, {bits});")
            body.append(f"  return {run_model}((void*)values, (void*)type_codes, {count}, (void*)&ret_value, "
                        "(void*)&ret_code, (void*)0);")
        else:
            if len(params) != len(inputs) + len(outputs):
                raise _fail(where, f"codegen/host/src/{file}",
                            f"{run_model} takes {len(params)} parameters but the model has {len(inputs)} inputs and "
                            f"{len(outputs)} outputs")
            args = [f"inputs->{m}" for m in members_in] + [f"outputs->{m}" for m in members_out]
            body.append(f"  return {run_model}({', '.join(args)});")
    else:
        raise _fail(where, "codegen/host/src", f"no source defines {run_model} or {run}: the AOT entry point is missing")

    static_bytes = workspace + sum(pools.values())
    try:
        header = generate_header(io_model, Plan([], static_bytes, static_bytes))
    except CompileError as err:
        raise _fail(where, "metadata.json", str(err))
    lines = [
        f"/* Generated by microtvm-projects for legacy AOT archive {metadata['model_name']!r}. Do not edit.",
        f" * {run}, our C interface, over the archive's own AOT main; the workspace its code allocates",
        " * (TVMBackendAllocWorkspace) and its USMP pools, if any, are static arrays sized from its metadata. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        *includes,
        '#include "tvm_legacy_shim.h"',
        "",
        "#if defined(__GNUC__)",
        "#define TVM_LEGACY_ALIGN16 __attribute__((aligned(16)))",
        "#else",
        "#define TVM_LEGACY_ALIGN16",
        "#endif",
        "",
        *declarations,
        "",
    ]
    if workspace:
        lines += _static_pool("workspace_pool", workspace)
    for member, size in pools.items():
        lines += _static_pool(f"pool_{member}", size)
    lines += [
        "",
        f"int32_t {run}(struct tvmgen_{c}_inputs* inputs, struct tvmgen_{c}_outputs* outputs) {{",
        f"  tvm_legacy_shim_set_default_pool({'workspace_pool.bytes' if workspace else 'NULL'}, {workspace}u);",
        *body,
        "}",
        "",
    ]
    set_aside = _set_aside(model_dir, sources, archive_header_path)
    _install_shim(model_dir, sources)
    if renamed:
        (include / f"tvmgen_{c}_legacy.h").write_text(legacy_header, encoding="utf-8")
    include.mkdir(parents=True, exist_ok=True)
    (include / f"tvmgen_{c}.h").write_text(header, encoding="utf-8")
    (src / f"{c}_legacy_entry.c").write_text("\n".join(lines), encoding="utf-8")
    linked = any("__tvm_param__" in text for text in sources.kernels.values()) or "_lookup_linked_param" in sources.definitions
    translation = Translation("aot", c, metadata.get("workspace_size_bytes"), static_bytes, static_bytes, linked, set_aside,
                              sorted(p.name for p in src.glob("*.c")))
    _write_translation(model_dir, translation)
    return translation
