"""Legacy Model Library Format archives for tests, all derived from the real TVM 0.8 graph archive
../shared/fixtures/legacy-mlf/micro_speech_graph_executor_mlf_v5.tar: the other MLF versions'
layouts (v2-v4 "runtimes" + runtime-config/graph, v6-v7 "modules"), the same kernels without
linked parameters (weights only in parameters/default.params), an AOT archive from the same
kernels (tests/c/legacy_aot/), and damaged ones."""

import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np

from conftest import fixture_path

AOT_DATA = Path(__file__).resolve().parent / "c" / "legacy_aot"
TINY_DATA = Path(__file__).resolve().parent / "c" / "legacy_tiny"
TINY_P0 = np.array([100, -100, 50, -50, 127, -128, 0, 1], np.int8)
LIB1 = "codegen/host/src/default_lib1.c"
# Bytes the synthetic AOT main allocates (its five intermediates) plus the largest kernel
# workspace (the convolution's 5,360 B in the fixture's metadata), every block 16-byte rounded.
AOT_WORKSPACE_BYTES = 3920 + 4000 + 8000 + 16 + 16 + 5360


def graph_fixture() -> Path:
    return fixture_path("legacy-mlf", "micro_speech_graph_executor_mlf_v5.tar")


def extract(dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(graph_fixture()) as tar:
        tar.extractall(dest, filter="data")
    return dest


def pack(root: Path, out: Path) -> Path:
    with tarfile.open(out, "w") as tar:
        tar.add(str(root), arcname=".")
    shutil.rmtree(root)
    return out


def _metadata(root: Path) -> dict:
    return json.loads((root / "metadata.json").read_text())


def _write_metadata(root: Path, meta: dict) -> None:
    (root / "metadata.json").write_text(json.dumps(meta, indent=2))


def versioned(tmp: Path, version: int) -> Path:
    """The graph fixture re-laid out as MLF ``version`` (2..7)."""
    root = extract(tmp / f"v{version}")
    meta = _metadata(root)
    meta["version"] = version
    if version <= 4:
        meta["runtimes"] = meta.pop("executors")
        (root / "runtime-config" / "graph").mkdir(parents=True)
        shutil.move(str(root / "executor-config" / "graph" / "graph.json"), str(root / "runtime-config" / "graph"))
        shutil.rmtree(root / "executor-config")
        if version == 2:  # v2 memory was only the storage list
            meta["memory"] = meta["memory"]["sids"]
    if version >= 6:
        module = {k: meta.pop(k) for k in ("model_name", "export_datetime", "memory", "target", "executors", "style")}
        module["target"] = list(module["target"].values())
        meta["modules"] = {"default": module}
        if version == 7:  # TVM 0.10+ lists the I/O in main, by size and dtype, under the model's names
            main = module["memory"]["functions"]["main"][0]
            main["inputs"] = {"Reshape_1": {"size": 1960, "dtype": "int8"}}
            main["outputs"] = {"Identity": {"size": 4, "dtype": "int8"}}
    _write_metadata(root, meta)
    return pack(root, tmp / f"legacy_v{version}.tar")


def with_nop(tmp: Path) -> Path:
    """The graph fixture with a trailing __nop node (the graph executor's storage alias, what TVM
    emits for a reshape-only function) between the last kernel and the model output."""
    root = extract(tmp / "nop")
    path = root / "executor-config" / "graph" / "graph.json"
    graph = json.loads(path.read_text())
    last = graph["heads"][0][0]
    graph["nodes"].append({"op": "tvm_op", "name": "reshape_nop", "inputs": [[last, 0, 0]],
                           "attrs": {"func_name": "__nop", "num_inputs": "1", "num_outputs": "1", "flatten_data": "0"}})
    entry = graph["node_row_ptr"][last]
    graph["node_row_ptr"].append(graph["node_row_ptr"][-1] + 1)
    for key in ("storage_id", "shape", "dltype"):
        graph["attrs"][key][1].append(graph["attrs"][key][1][entry])
    graph["heads"] = [[len(graph["nodes"]) - 1, 0, 0]]
    path.write_text(json.dumps(graph))
    return pack(root, tmp / "legacy_nop.tar")


def unlinked(tmp: Path) -> Path:
    """The same kernels built without -link-params: no _lookup_linked_param, weights in .params only."""
    root = extract(tmp / "unlinked")
    lib1 = (root / LIB1).read_text()
    lib1 = re.sub(r"static const \w+ __tvm_param__\w+\[\d+\] = \{.*?\};\n", "", lib1, flags=re.S)
    lib1 = lib1[: lib1.index("TVM_DLL int32_t _lookup_linked_param(")] + "#ifdef __cplusplus\n}\n#endif\n"
    (root / LIB1).write_text(lib1)
    lib0 = root / "codegen/host/src/default_lib0.c"
    lib0.write_text(lib0.read_text().replace("    (TVMBackendPackedCFunc)_lookup_linked_param,\n", ""))
    meta = _metadata(root)
    meta["target"]["1"] = meta["target"]["1"].replace("-link-params=1", "-link-params=0")
    _write_metadata(root, meta)
    return pack(root, tmp / "legacy_unlinked.tar")


def aot(tmp: Path, style: str = "v08") -> Path:
    """An AOT archive of the same kernels (tests/c/legacy_aot/), in one of three styles:
    v08: TVM 0.8, MLF v5: tvmgen_default_run_model in the kernels' file, the CRT AOT glue in
         default_lib0.c, the I/O only in src/relay.txt; v08_packed: the same with the packed entry;
    capi: TVM 0.9+ --interface-api=c, MLF v7: tvmgen_default.h, tvmgen_default_run in default_lib0.c
          over tvmgen_default___tvm_main__, main lists inputs/outputs by size and dtype;
    usmp: as capi, with a USMP workspace pool (struct tvmgen_default_workspace_pools).
    Intermediates come from TVMBackendAllocWorkspace (v08, capi) or the pool (usmp)."""
    root = extract(tmp / f"aot_{style}")
    lib1 = (root / LIB1).read_text() + "\n" + (AOT_DATA / "micro_speech_aot_body.c").read_text()
    (root / LIB1).write_text(lib1 + "\n" + (AOT_DATA / f"aot_main_{style}.c").read_text())
    lib0 = {"v08": "default_lib0_crt_aot.c", "v08_packed": "default_lib0_crt_aot.c", "capi": "default_lib0_capi.c",
            "usmp": "default_lib0_usmp.c"}[style]
    shutil.copy2(AOT_DATA / lib0, root / "codegen/host/src/default_lib0.c")
    shutil.rmtree(root / "executor-config")
    relay = root / "src" / "relay.txt"
    relay.write_text(relay.read_text().replace(") {", ") -> Tensor[(1, 4), int8] {", 1))
    meta = _metadata(root)
    main = {"constants_size_bytes": 33524, "device": 1, "io_size_bytes": 1964, "workspace_size_bytes": AOT_WORKSPACE_BYTES}
    meta["executors"] = ["aot"]
    meta["memory"] = {"functions": {"main": [main], "operator_functions": meta["memory"]["functions"]["operator_functions"]}}
    if not style.startswith("v08"):
        (root / "codegen/host/include").mkdir(parents=True)
        shutil.copy2(AOT_DATA / f"tvmgen_default_{style}.h", root / "codegen/host/include/tvmgen_default.h")
        main["inputs"] = {"Reshape_1": {"size": 1960, "dtype": "int8"}}
        main["outputs"] = {"output": {"size": 4, "dtype": "int8"}}
        module = {k: meta.pop(k) for k in ("model_name", "export_datetime", "memory", "target", "executors", "style")}
        module["target"] = list(module["target"].values())
        meta = {"version": 7, "modules": {"default": module}}
    _write_metadata(root, meta)
    return pack(root, tmp / f"legacy_aot_{style}.tar")


def tiny(tmp: Path) -> Path:
    """A legacy graph archive (MLF v5, TVM 0.8 layout) small enough for an AVR: two hand-written
    packed kernels (tests/c/legacy_tiny/), the weight p0 only in parameters/default.params."""
    from project_api.mlf.legacy_params import save_params

    root = tmp / "tiny"
    for folder in ("codegen/host/src", "executor-config/graph", "parameters", "src"):
        (root / folder).mkdir(parents=True)
    shutil.copy2(TINY_DATA / "default_lib1.c", root / LIB1)
    shutil.copy2(TINY_DATA / "graph.json", root / "executor-config/graph/graph.json")
    (root / "parameters/default.params").write_bytes(save_params({"p0": TINY_P0}))
    (root / "src/relay.txt").write_text(
        "def @main(%x: Tensor[(1, 8), int8], %v_param_1: Tensor[(8), int8]) {\n"
        "  %0 = add(%x, %v_param_1);\n  negative(clip(%0, a_min=-128f, a_max=127f))\n}\n")
    _write_metadata(root, {
        "version": 5, "model_name": "default", "export_datetime": "2021-07-28 15:17:07Z", "style": "full-model",
        "executors": ["graph"], "target": {"1": "c -keys=cpu -link-params=0 -runtime=c -system-lib=1"},
        "memory": {"functions": {
            "main": [{"constants_size_bytes": 8, "device": 1, "io_size_bytes": 16, "workspace_size_bytes": 48}],
            "operator_functions": [
                {"function_name": "tvmgen_default_fused_add_clip", "workspace": [{"device": 1, "workspace_size_bytes": 16}]},
                {"function_name": "tvmgen_default_fused_negative_clip", "workspace": [{"device": 1, "workspace_size_bytes": 0}]},
            ]}}})
    return pack(root, tmp / "legacy_tiny.tar")


def tiny_expected(x: np.ndarray) -> np.ndarray:
    added = np.clip(x.astype(np.int16) + TINY_P0.astype(np.int16), -128, 127)
    return np.clip(-added, -128, 127).astype(np.int8)


def damaged(tmp: Path, how: str) -> Path:
    """The graph fixture broken one way: missing_graph, truncated_params, missing_param,
    no_params, unknown_symbol, llvm_target, object_file, missing_kernel; the AOT archive without
    its entry (aot_no_entry) or its workspace size (aot_no_workspace)."""
    if how.startswith("aot_"):  # the v08 AOT archive, broken
        root = tmp / how
        with tarfile.open(aot(tmp, "v08")) as tar:
            tar.extractall(root, filter="data")
    else:
        root = extract(tmp / how)
    if how == "aot_no_entry":
        lib1 = (root / LIB1).read_text()
        (root / LIB1).write_text(lib1.replace("tvmgen_default_run_model(void* arg0", "tvmgen_default_main_renamed(void* arg0"))
    elif how == "aot_no_workspace":
        meta = _metadata(root)
        del meta["memory"]["functions"]["main"][0]["workspace_size_bytes"]
        _write_metadata(root, meta)
    elif how == "missing_graph":
        (root / "executor-config" / "graph" / "graph.json").unlink()
    elif how == "truncated_params":
        params = root / "parameters" / "default.params"
        params.write_bytes(params.read_bytes()[:20000])
    elif how == "unknown_symbol":
        lib1 = (root / LIB1).read_text()
        (root / LIB1).write_text(lib1.replace("return 0;\n}", "return TVMBackendParallelLaunch(0, 0, 0);\n}", 1))
    elif how == "llvm_target":
        meta = _metadata(root)
        meta["target"]["1"] = "llvm -keys=cpu -link-params=1"
        _write_metadata(root, meta)
    elif how == "object_file":
        (root / "codegen" / "host" / "lib").mkdir()
        (root / "codegen" / "host" / "lib" / "lib0.o").write_bytes(b"\x7fELF")
    elif how == "no_params":  # linked weights, but parameters/default.params (their names) is gone
        (root / "parameters" / "default.params").unlink()
    elif how == "missing_param":  # weights only in .params (no -link-params), one of them gone
        shutil.rmtree(root)
        with tarfile.open(unlinked(tmp)) as tar:
            tar.extractall(root, filter="data")
        from project_api.mlf.legacy_params import load_params, save_params

        params = root / "parameters" / "default.params"
        weights = load_params(params.read_bytes())
        del weights["p3"]
        params.write_bytes(save_params(weights))
    elif how == "missing_kernel":
        graph = root / "executor-config" / "graph" / "graph.json"
        graph.write_text(graph.read_text().replace('"func_name": "tvmgen_default_fused_nn_softmax"',
                                                   '"func_name": "tvmgen_default_fused_nn_softmax_gone"'))
    else:
        raise ValueError(how)
    return pack(root, tmp / f"legacy_{how}.tar")
