"""The arena planner: one static arena for every INTERMEDIATE and WORKSPACE tensor.

Lifetimes come from the call order: a tensor is live from the first call that references it to
the last one (a workspace used by a single call lives only during that call). Buffers are placed
greedily, largest first, each at the lowest aligned offset where it overlaps no already-placed
buffer whose lifetime intersects its own (the TFLite Micro "greedy by size" planner); a few
orders of equal-sized buffers are tried and the smallest arena kept.
Model inputs and outputs are caller-owned buffers and constants live in flash: neither is in the
arena.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Dict, Iterable, List, Optional

from .ir import INTERMEDIATE, WORKSPACE, LoweredModel

# Offsets are multiples of 16 bytes: any scalar a kernel can load (up to 8-byte int64/double)
# is then naturally aligned, and so are 16-byte SIMD loads (Helium/MVE, NEON on the host),
# the alignment TFLM's arena and the legacy microTVM workspaces used too. It costs at most
# 15 bytes of padding per buffer.
ARENA_ALIGNMENT = 16


@dataclasses.dataclass(frozen=True)
class Buffer:
    """A buffer to place: ``size`` bytes, live during calls ``first``..``last`` (inclusive)."""

    name: str
    size: int
    first: int
    last: int

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclasses.dataclass(frozen=True)
class Placement:
    name: str
    kind: str
    offset: int
    size: int
    first: int  # index of the first call that references the tensor
    last: int  # index of the last call that references the tensor


@dataclasses.dataclass
class Plan:
    placements: List[Placement]  # in order of offset, then first use
    arena_size: int  # bytes of the arena (0 when the model needs none)
    lower_bound: int  # max over calls of the bytes of simultaneously live arena tensors
    alignment: int = ARENA_ALIGNMENT

    @property
    def offsets(self) -> Dict[str, int]:
        return {p.name: p.offset for p in self.placements}


def _align_up(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def liveness_lower_bound(buffers: Iterable[Buffer]) -> int:
    """No arena can be smaller: the most bytes live at the same call."""
    buffers = list(buffers)
    if not buffers:
        return 0
    last_step = max(b.last for b in buffers)
    return max(sum(b.size for b in buffers if b.first <= step <= b.last) for step in range(last_step + 1))


def _place_in_order(order: List[Buffer], alignment: int) -> Dict[str, int]:
    """Each buffer in turn at the lowest aligned offset free during its whole lifetime."""
    placed: List[tuple] = []  # (offset, buffer)
    offsets: Dict[str, int] = {}
    for buf in order:
        conflicts = sorted(((off, other) for off, other in placed if other.overlaps_in_time(buf)), key=lambda t: t[0])
        candidate = 0
        for off, other in conflicts:
            if candidate + buf.size <= off:
                break  # fits in the gap before this conflicting buffer
            candidate = max(candidate, _align_up(off + other.size, alignment))
        placed.append((candidate, buf))
        offsets[buf.name] = candidate
    return offsets


def _arena_size(buffers: Iterable[Buffer], offsets: Dict[str, int]) -> int:
    return max((offsets[b.name] + b.size for b in buffers), default=0)


# Plans for a few hundred tensors stay well under a second.
_SEARCH_BUDGET = 400_000


def place_buffers(buffers: Iterable[Buffer], alignment: int = ARENA_ALIGNMENT) -> Dict[str, int]:
    """Greedy by size with offset packing into gaps; returns name -> offset.

    Largest first, as TFLM. Greedy placement depends on how equal-sized buffers are ordered
    (a chain of same-size activations can leave a small tensor no gap: MLPerf Tiny AD, 264 B for
    a 256 B bound), so a few deterministic tie orders and seeded shuffles of ties are tried too,
    keeping the smallest arena and stopping as soon as one reaches the lower bound.
    """
    buffers = list(buffers)
    bound = liveness_lower_bound(buffers)
    orders = [
        sorted(buffers, key=lambda b: (-b.size, b.first, b.name)),
        sorted(buffers, key=lambda b: (-b.size, -(b.last - b.first), b.first, b.name)),
        sorted(buffers, key=lambda b: (-b.size, -b.last, b.name)),
    ]
    best: Optional[Dict[str, int]] = None
    best_size = 0
    tries = max(len(orders), min(64, _SEARCH_BUDGET // max(1, len(buffers) ** 2)))
    rng = random.Random(0)
    for attempt in range(tries):
        if attempt < len(orders):
            order = orders[attempt]
        else:
            ties = {b.name: rng.random() for b in buffers}
            order = sorted(buffers, key=lambda b: (-b.size, ties[b.name]))
        offsets = _place_in_order(order, alignment)
        size = _arena_size(buffers, offsets)
        if best is None or size < best_size:
            best, best_size = offsets, size
        if best_size <= bound:
            break
    if best is not None and best_size > bound:
        # First-use order: when a large, short-lived buffer (a legacy kernel's workspace) sits between
        # two chained activations, size order leaves a gap too small for the earlier activation.
        offsets = _place_in_order(sorted(buffers, key=lambda b: (b.first, -b.size, b.name)), alignment)
        size = _arena_size(buffers, offsets)
        if size < best_size:
            best, best_size = offsets, size
    return best if best is not None else {}


def arena_buffers(model: LoweredModel) -> Dict[str, Buffer]:
    """The model's arena tensors with their lifetimes (call indices)."""
    spans: Dict[str, List[int]] = {}
    for index, call in enumerate(model.calls):
        for name in call.args:
            if model.tensors[name].kind not in (INTERMEDIATE, WORKSPACE):
                continue
            span = spans.setdefault(name, [index, index])
            span[1] = index
    return {name: Buffer(name, model.tensors[name].nbytes, first, last) for name, (first, last) in spans.items()}


def plan_model(model: LoweredModel, alignment: int = ARENA_ALIGNMENT) -> Plan:
    """Plan the arena of ``model``. Arena tensors no call references get no space."""
    buffers = arena_buffers(model)
    offsets = place_buffers(buffers.values(), alignment)
    placements = sorted(
        (
            Placement(b.name, model.tensors[b.name].kind, offsets[b.name], b.size, b.first, b.last)
            for b in buffers.values()
        ),
        key=lambda p: (p.offset, p.first, p.name),
    )
    return Plan(placements, _arena_size(buffers.values(), offsets), liveness_lower_bound(buffers.values()), alignment)


def check_plan(buffers: Iterable[Buffer], offsets: Dict[str, int], alignment: Optional[int] = None) -> None:
    """Raise AssertionError if two simultaneously-live buffers share a byte (tests, debugging)."""
    buffers = list(buffers)
    for i, a in enumerate(buffers):
        if alignment and offsets[a.name] % alignment:
            raise AssertionError(f"{a.name} at {offsets[a.name]} is not {alignment}-byte aligned")
        for b in buffers[i + 1 :]:
            if not a.overlaps_in_time(b) or a.size == 0 or b.size == 0:
                continue
            oa, ob = offsets[a.name], offsets[b.name]
            if oa < ob + b.size and ob < oa + a.size:
                raise AssertionError(f"{a.name} [{oa}, {oa + a.size}) overlaps {b.name} [{ob}, {ob + b.size})")
