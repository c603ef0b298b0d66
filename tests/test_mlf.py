"""MLF v7 export, reading v2..v7 metadata, and the native runner on hand-built models."""

import io
import json
import tarfile

import numpy as np
import pytest

from conftest import fixture_path
from lowered_samples import float_mlp, float_mlp_reference, int8_dense, int8_dense_reference
from project_api.compiler.mlf import MLFError, export_mlf, extract_mlf, read_metadata
from project_api.compiler.native import NativeModel, NativeRunError, run_native
from project_api.compiler.planner import plan_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlf")
    return {
        "mlp": export_mlf(float_mlp(), out / "mlp.tar", export_datetime="2026-01-01 00:00:00Z"),
        "int8": export_mlf(int8_dense(), out / "int8.tar"),
        "int8_graph": export_mlf(int8_dense(), out / "int8_graph.tar", executor="graph"),
    }


@pytest.fixture(scope="module")
def native_mlp(exported):
    with NativeModel(exported["mlp"]) as model:
        yield model


def _members(path):
    with tarfile.open(path, "r:") as tar:  # "r:" = uncompressed only
        return {m.name: m for m in tar.getmembers()}


def test_archive_layout(exported):
    assert exported["mlp"].read_bytes()[:2] != b"\x1f\x8b"
    names = _members(exported["mlp"])
    assert all(n == "." or n.startswith("./") for n in names)
    files = {n for n, m in names.items() if m.isfile()}
    assert files == {
        "./metadata.json",
        "./codegen/host/include/tvmgen_sample_mlp.h",
        "./codegen/host/src/sample_mlp_kernels.c",
        "./codegen/host/src/sample_mlp_runtime.c",
        "./executor-config/graph/sample_mlp.graph",
        "./parameters/sample_mlp.params",
        "./src/sample_mlp.relax",
    }


def _metadata(path):
    with tarfile.open(path) as tar:
        return json.load(tar.extractfile("./metadata.json"))


def test_metadata_v7(exported):
    model = float_mlp()
    plan = plan_model(model)
    meta = _metadata(exported["mlp"])
    assert meta["version"] == 7 and list(meta["modules"]) == ["sample-mlp"]
    module = meta["modules"]["sample-mlp"]
    assert module["model_name"] == "sample-mlp"
    assert module["export_datetime"] == "2026-01-01 00:00:00Z"
    assert module["target"] == ["c"] and module["executors"] == ["aot"]
    assert module["style"] == "full-model" and module["external_dependencies"] == []
    main = module["memory"]["functions"]["main"]
    assert len(main) == 1 and main[0]["device"] == 1
    assert main[0]["workspace_size_bytes"] == plan.arena_size == 128
    assert main[0]["constants_size_bytes"] == (128 + 16 + 64 + 4) * 4
    assert main[0]["io_size_bytes"] == (8 + 16 + 4 + 16) * 4
    assert main[0]["inputs"] == {
        "input:0": {"size": 32, "dtype": "float32", "shape": [1, 8]},
        "bias_in": {"size": 64, "dtype": "float32", "shape": [1, 16]},
    }
    assert list(main[0]["outputs"]) == ["out/logits", "out relu"]
    functions = {f["function_name"] for f in module["memory"]["functions"]["operator_functions"]}
    assert functions == {c.func_name for c in model.calls}
    ours = module["microtvm_projects"]
    assert ours["memory"]["arena_bytes"] == 128 and ours["memory"]["lower_bound_bytes"] == 128
    assert {p["name"]: p["offset"] for p in ours["memory"]["placements"]} == plan.offsets
    assert ours["generator_version"] and ours["run_function"] == "tvmgen_sample_mlp_run"


def test_params_are_npz_of_the_constants(exported):
    with tarfile.open(exported["int8"]) as tar:
        params = np.load(io.BytesIO(tar.extractfile("./parameters/default.params").read()))
        model = int8_dense()
        assert set(params.files) == {"w", "bias"}
        for name in params.files:
            assert params[name].dtype == model.tensors[name].dtype
            np.testing.assert_array_equal(params[name], model.tensors[name].data)


def test_graph_executor_archive(exported):
    meta = _metadata(exported["int8_graph"])
    module = meta["modules"]["default"]
    assert module["executors"] == ["graph"]
    assert module["memory"]["sids"][0] == {"storage_id": 0, "size_bytes": 64, "input_binding": "x"}
    # the same C: the static runtime drives a graph-executor archive too
    assert module["microtvm_projects"]["run_function"] == "tvmgen_default_run"
    with tarfile.open(exported["int8_graph"]) as tar:
        graph = json.load(tar.extractfile("./executor-config/graph/default.graph"))
    nodes, row_ptr, attrs = graph["nodes"], graph["node_row_ptr"], graph["attrs"]
    assert len(row_ptr) == len(nodes) + 1
    entries = row_ptr[-1]
    for key in ("storage_id", "shape", "dltype", "arena_offset"):
        assert len(attrs[key][1]) == entries
    assert [nodes[i]["name"] for i in graph["arg_nodes"]] == ["x", "w", "bias"]
    ops = [n for n in nodes if n["op"] == "tvm_op"]
    assert [n["attrs"]["func_name"] for n in ops] == ["sample_dense_i8", "sample_relu_i8"]
    assert ops[0]["attrs"]["num_inputs"] == "3" and ops[0]["attrs"]["num_outputs"] == "1"
    assert ops[0]["attrs"]["workspaces"][0]["name"] == "acc"
    head = graph["heads"][0]
    assert attrs["shape"][1][row_ptr[head[0]] + head[1]] == [1, 32]
    assert attrs["dltype"][1][row_ptr[head[0]] + head[1]] == "int8"


def test_read_metadata_tar_and_directory_agree(exported, tmp_path):
    from_tar = read_metadata(exported["mlp"])
    from_dir = read_metadata(extract_mlf(exported["mlp"], tmp_path / "x"))
    assert from_tar == from_dir
    assert from_tar["version"] == 7 and from_tar["model_name"] == "sample-mlp" and from_tar["c_name"] == "sample_mlp"
    assert from_tar["workspace_size_bytes"] == 128 and from_tar["executors"] == ["aot"]
    assert [(t["name"], t["dtype"], t["shape"], t["size"]) for t in from_tar["inputs"]] == [
        ("input:0", "float32", [1, 8], 32), ("bias_in", "float32", [1, 16], 64)]
    assert [t["name"] for t in from_tar["outputs"]] == ["out/logits", "out relu"]


def test_read_legacy_v5_graph_archive():
    meta = read_metadata(fixture_path("legacy-mlf", "micro_speech_graph_executor_mlf_v5.tar"))
    assert meta["version"] == 5 and meta["model_name"] == "default"
    assert meta["executors"] == ["graph"]
    assert meta["workspace_size_bytes"] == 17392 and meta["constants_size_bytes"] == 33524
    assert meta["target"][0].startswith("c -keys=cpu")
    assert meta["inputs"] == [{"name": "Reshape_1", "dtype": "int8", "shape": [1, 1960], "size": 1960}]
    assert [(t["dtype"], t["shape"]) for t in meta["outputs"]] == [("int8", [1, 4])]
    assert meta["ours"] is None


def _tar_with(tmp_path, files, name="a.tar"):
    path = tmp_path / name
    with tarfile.open(path, "w") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo("./" + rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read_v3_style_archive(tmp_path):
    graph = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                       {"op": "tvm_op", "name": "f", "attrs": {"func_name": "f"}, "inputs": [[0, 0, 0]]}],
             "arg_nodes": [0], "heads": [[1, 0, 0]], "node_row_ptr": [0, 1, 2],
             "attrs": {"shape": ["list_shape", [[1, 3], [1, 2]]], "dltype": ["list_str", ["uint8", "float32"]],
                       "storage_id": ["list_int", [0, 1]]}}
    meta = {"version": 3, "model_name": "m", "runtimes": ["graph"], "target": {"1": "c"},
            "memory": [{"storage_id": 0, "size_bytes": 3, "input_binding": "data"}, {"storage_id": 1, "size_bytes": 8}]}
    path = _tar_with(tmp_path, {"metadata.json": json.dumps(meta).encode(),
                                "runtime-config/graph/graph.json": json.dumps(graph).encode()})
    result = read_metadata(path)
    assert result["executors"] == ["graph"] and result["target"] == ["c"]
    assert result["workspace_size_bytes"] == 8
    assert result["inputs"] == [{"name": "data", "dtype": "uint8", "shape": [1, 3], "size": 3}]
    assert result["outputs"][0]["shape"] == [1, 2]


def test_read_errors_are_one_line(exported, tmp_path):
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(exported["mlp"].read_bytes()[:700])
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"this is not a tar file at all" * 40)
    cases = [
        (truncated, "tar|metadata"),
        (garbage, "not a readable tar"),
        (_tar_with(tmp_path, {"other.txt": b"x"}, "nometa.tar"), "no metadata.json"),
        (_tar_with(tmp_path, {"metadata.json": b'{"version": 8}'}, "v8.tar"), "version 8 is not supported"),
        (_tar_with(tmp_path, {"metadata.json": b'{"version": 1}'}, "v1.tar"), "version 1 is not supported"),
        (_tar_with(tmp_path, {"metadata.json": b"{not json"}, "badjson.tar"), "not valid JSON"),
    ]
    for path, message in cases:
        with pytest.raises(MLFError, match=message) as err:
            read_metadata(path)
        assert "\n" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        read_metadata(tmp_path / "absent.tar")


def test_extract_refuses_members_outside(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(MLFError, match="outside"):
        extract_mlf(path, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


# ---- the native runner --------------------------------------------------------------------------


def test_native_float_matches_numpy(native_mlp):
    model = float_mlp()
    rng = np.random.default_rng(7)
    batch = [(rng.standard_normal((1, 8)).astype(np.float32), rng.standard_normal((1, 16)).astype(np.float32))
             for _ in range(5)]
    results = native_mlp.run_many([{"input:0": x, "bias_in": b} for x, b in batch])
    assert len(results) == 5
    for (x, b), outputs in zip(batch, results):
        expected = float_mlp_reference(model, x, b)
        assert [o.shape for o in outputs] == [(1, 4), (1, 16)]
        for got, want in zip(outputs, expected):
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_native_int8_is_exact(exported):
    model = int8_dense()
    x = np.random.default_rng(3).integers(-128, 128, (1, 64)).astype(np.int8)
    expected = int8_dense_reference(model, x)
    for key in ("int8", "int8_graph"):
        (got,) = run_native(exported[key], [x])
        assert got.dtype == np.int8
        np.testing.assert_array_equal(got, expected[0])


def test_native_reports_kernel_status(native_mlp):
    bias = np.zeros((1, 16), np.float32)
    bias[0, 0] = -20000.0  # the sample relu kernel returns 42 for this
    with pytest.raises(NativeRunError, match="returned 42"):
        native_mlp.run([np.zeros((1, 8), np.float32), bias])


def test_native_checks_inputs(native_mlp):
    good = np.zeros((1, 8), np.float32)
    with pytest.raises(ValueError, match="must be float32"):
        native_mlp.run([good.astype(np.float64), np.zeros((1, 16), np.float32)])
    with pytest.raises(ValueError, match="shape"):
        native_mlp.run([np.zeros((8,), np.float32), np.zeros((1, 16), np.float32)])
    with pytest.raises(ValueError, match="missing"):
        native_mlp.run({"input:0": good})
    with pytest.raises(ValueError, match="takes 2 inputs"):
        native_mlp.run([good])


def test_native_model_cleans_up(exported):
    with NativeModel(exported["int8"]) as model:
        build_dir = model.build_dir
        assert model.executable.exists()
    assert not build_dir.exists()
