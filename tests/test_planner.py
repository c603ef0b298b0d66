"""The arena planner: lifetimes from the call order, greedy by size, 16-byte offsets."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from lowered_samples import float_mlp, int8_dense
from project_api.compiler.ir import CONSTANT, INPUT, INTERMEDIATE, OUTPUT, WORKSPACE, KernelCall, LoweredModel, Tensor
from project_api.compiler.planner import (
    ARENA_ALIGNMENT,
    Buffer,
    check_plan,
    liveness_lower_bound,
    place_buffers,
    plan_model,
)


def _chain_model(sizes, workspace_sizes=()):
    """x -> k0 -> t0 -> k1 -> t1 ... -> y; call i also uses workspace ws<i> when given."""
    tensors = {"x": Tensor("x", (4,), "int8", INPUT), "y": Tensor("y", (4,), "int8", OUTPUT)}
    names = [f"t{i}" for i in range(len(sizes))]
    for name, size in zip(names, sizes):
        tensors[name] = Tensor(name, (size,), "int8", INTERMEDIATE)
    chain = ["x"] + names + ["y"]
    calls = []
    for i, (src, dst) in enumerate(zip(chain, chain[1:])):
        args, writes = [src, dst], [dst]
        if i < len(workspace_sizes):
            ws = f"ws{i}"
            tensors[ws] = Tensor(ws, (workspace_sizes[i],), "int8", WORKSPACE)
            args.append(ws)
            writes.append(ws)
        calls.append(KernelCall(f"k{i}", args, writes))
    return LoweredModel("chain", tensors, ["x"], ["y"], calls, "")


def test_chain_reuses_memory_of_dead_tensors():
    plan = plan_model(_chain_model([100, 200, 100, 50]))
    # peak: t0 + t1 while k1 runs, t1 + t2 while k2 runs. t1 goes first (largest) at 0, t0 and t2
    # above it at 208 (200 aligned up), and t3 (live only after t1 died) back at offset 0.
    assert plan.lower_bound == 300
    assert plan.offsets == {"t1": 0, "t0": 208, "t2": 208, "t3": 0}
    assert plan.arena_size == 308
    check_plan(
        [Buffer(p.name, p.size, p.first, p.last) for p in plan.placements], plan.offsets, ARENA_ALIGNMENT
    )


def test_only_intermediates_and_workspaces_are_in_the_arena():
    plan = plan_model(float_mlp())
    assert {p.name for p in plan.placements} == {"h1", "h2"}
    plan = plan_model(int8_dense())
    assert {p.name: p.kind for p in plan.placements} == {"acc": WORKSPACE, "dense_out": INTERMEDIATE}
    # the workspace and the kernel's output are live in the same call: they must not share bytes
    placed = {p.name: p for p in plan.placements}
    acc, out = placed["acc"], placed["dense_out"]
    assert acc.offset + acc.size <= out.offset or out.offset + out.size <= acc.offset


def test_workspaces_live_only_during_their_call():
    plan = plan_model(_chain_model([16, 16, 16], workspace_sizes=[400, 0, 400]))
    placed = {p.name: p for p in plan.placements}
    assert placed["ws0"].first == placed["ws0"].last == 0
    assert placed["ws2"].first == placed["ws2"].last == 2
    assert placed["ws0"].offset == placed["ws2"].offset  # same bytes, different calls
    assert plan.lower_bound == 400 + 16 + 16


def test_offsets_are_16_byte_aligned():
    plan = plan_model(_chain_model([3, 5, 7, 9, 11]))
    assert all(p.offset % 16 == 0 for p in plan.placements)


def test_small_buffer_packs_into_a_gap():
    # b (largest) goes to 0; a and c (never live together) share the bytes above it; d, live only
    # at step 0 before b, packs into the gap at 0; e is live with a, b and c, so it goes above all.
    buffers = [Buffer("a", 64, 0, 1), Buffer("b", 128, 1, 2), Buffer("c", 64, 2, 3), Buffer("d", 48, 0, 0),
               Buffer("e", 32, 1, 2)]
    offsets = place_buffers(buffers)
    check_plan(buffers, offsets, 16)
    assert offsets["b"] == 0 and offsets["a"] == 128 and offsets["c"] == 128
    assert offsets["d"] == 0  # packed into the bytes b uses later
    assert offsets["e"] == 192
    assert liveness_lower_bound(buffers) == 64 + 128 + 32


def test_empty_model_has_no_arena():
    tensors = {"x": Tensor("x", (4,), "float32", INPUT), "y": Tensor("y", (4,), "float32", OUTPUT),
               "w": Tensor("w", (4,), "float32", CONSTANT)}
    model = LoweredModel("m", tensors, ["x"], ["y"], [KernelCall("k", ["x", "w", "y"], ["y"])], "")
    plan = plan_model(model)
    assert plan.arena_size == 0 and plan.lower_bound == 0 and plan.placements == []


def _assert_no_overlap_by_definition(model, plan):
    """Recompute liveness here (first..last referencing call) and check every pair byte-disjoint."""
    refs = {}
    for step, call in enumerate(model.calls):
        for name in call.args:
            if model.tensors[name].kind in (INTERMEDIATE, WORKSPACE):
                refs.setdefault(name, []).append(step)
    placed = {p.name: p for p in plan.placements}
    assert set(placed) == set(refs)
    for step in range(len(model.calls)):
        live = [n for n, steps in refs.items() if min(steps) <= step <= max(steps)]
        for a, b in itertools.combinations(live, 2):
            pa, pb = placed[a], placed[b]
            if pa.size and pb.size:
                assert pa.offset + pa.size <= pb.offset or pb.offset + pb.size <= pa.offset, (step, pa, pb)
        assert plan.arena_size >= sum(placed[n].size for n in live)


@st.composite
def random_models(draw):
    n_tensors = draw(st.integers(1, 12))
    n_calls = draw(st.integers(1, 10))
    tensors = {"x": Tensor("x", (1,), "float32", INPUT), "y": Tensor("y", (1,), "float32", OUTPUT)}
    names = []
    for i in range(n_tensors):
        kind = draw(st.sampled_from([INTERMEDIATE, INTERMEDIATE, WORKSPACE]))
        dtype = draw(st.sampled_from(["int8", "int16", "float32", "int64"]))
        tensors[f"t{i}"] = Tensor(f"t{i}", (draw(st.integers(0, 300)),), dtype, kind)
        names.append(f"t{i}")
    calls = []
    for step in range(n_calls):
        args = draw(st.lists(st.sampled_from(names), min_size=1, max_size=4))
        calls.append(KernelCall(f"k{step}", ["x"] + args + (["y"] if step == n_calls - 1 else []), args))
    return LoweredModel("random", tensors, ["x"], ["y"], calls, "")


@settings(max_examples=200, deadline=None)
@given(random_models())
def test_property_no_two_live_tensors_overlap(model):
    plan = plan_model(model)
    _assert_no_overlap_by_definition(model, plan)
    assert plan.arena_size >= plan.lower_bound
    assert all(p.offset % ARENA_ALIGNMENT == 0 for p in plan.placements)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 30), st.integers(0, 30)), max_size=25))
def test_property_place_buffers(specs):
    buffers = [Buffer(f"b{i}", size, min(a, b), max(a, b)) for i, (size, a, b) in enumerate(specs)]
    offsets = place_buffers(buffers)
    check_plan(buffers, offsets, ARENA_ALIGNMENT)
    arena = max((offsets[b.name] + b.size for b in buffers), default=0)
    assert arena >= liveness_lower_bound(buffers)


def test_equal_sized_chain_with_a_small_tensor_reaches_the_bound():
    # The shape of MLPerf Tiny AD: 128-byte activations alternate, an 8-byte tensor sits between
    # two of them. Plain largest-first with first-use ties needs 264 B; the bound is 256 B.
    chain = [("t1", 128, 0, 1), ("t4", 128, 1, 2), ("t7", 128, 2, 3), ("t10", 128, 3, 4), ("t13", 8, 4, 5),
             ("t16", 128, 5, 6), ("t19", 128, 6, 7), ("t22", 128, 7, 8), ("t25", 128, 8, 9)]
    buffers = [Buffer(*spec) for spec in chain]
    offsets = place_buffers(buffers)
    check_plan(buffers, offsets, ARENA_ALIGNMENT)
    assert max(offsets[b.name] + b.size for b in buffers) == liveness_lower_bound(buffers) == 256
