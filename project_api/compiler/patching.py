"""Patch-based inference of a CNN's first stages (MCUNetV2), below the layer-wise memory bound.

A layer-by-layer plan must hold, at some call, a whole input and a whole output activation (VWW:
the 48x48x8 and 48x48x16 tensors of its third layer, 55,296 B). Run instead the first ``split``
convolutions band by band: each band of rows of the split layer's output is computed from the
band of input rows its receptive field covers, through small per-band intermediates, and written
into the whole split output, which is the only large tensor alive; the layers after the split run
as before. Rows whose receptive fields overlap are computed once per band that needs them: those
are the extra MACs. Outputs are bit-identical, because a band's kernel is the layer's own kernel
rebuilt over the band's rows (``qnn.KernelSpec.band_kernel``), its windows clipped exactly where
the whole layer's are (at the image borders, never inside).

Patches are bands of whole rows, not tiles, because a band of an NHWC tensor is contiguous: the
first layer reads its band straight from the caller's input and the last writes straight into the
split output, through a thin C wrapper that offsets one pointer, with no copies and no strided
kernels. (Tiles cut the halo per patch, but need a gather of each input tile into the arena.)

``candidate_plans`` enumerates every split point and band count of the model's leading chain of
convolutions (dilation 1, each reading only its predecessor's output), with the exact liveness
lower bound of the patched call sequence and its MACs; ``lower_within_budget`` compiles the
cheapest plan (fewest MACs) whose planned arena fits a budget, or refuses naming the smallest arena
it can reach. See docs/patching.md.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import ir
from .errors import CompileError


@dataclasses.dataclass(frozen=True)
class Layer:
    """One convolution of the leading chain, as patching sees it: rows in, rows out, bytes per row."""

    call: int
    kernel: int  # rows of the window
    stride: int
    pad_top: int
    in_rows: int
    out_rows: int
    in_row_elements: int  # width x channels of the input: elements of one full row
    out_row_elements: int
    macs_per_row: int  # multiply-accumulates per output row
    workspace_bytes: int = 0

    def input_rows(self, first: int, last: int) -> Tuple[int, int]:
        """The input rows [first, last) that output rows [first, last) read (clipped to the input)."""
        return (max(0, first * self.stride - self.pad_top),
                min(self.in_rows, (last - 1) * self.stride - self.pad_top + self.kernel))


# Per band, per layer: (input first row, input last row, output first row, output last row), half-open.
BandRows = Tuple[Tuple[int, int, int, int], ...]


@dataclasses.dataclass(frozen=True)
class PatchPlan:
    split: int  # the first ``split`` calls run band by band
    patches: int  # bands of the split layer's output rows
    bands: Tuple[BandRows, ...]
    macs: int  # of the patched layers, halo recomputation included
    layer_macs: int  # of the same layers run whole
    model_macs: int  # of the whole unpatched model
    lower_bound: int  # liveness lower bound of the patched call sequence (bytes)
    layerwise_bound: int  # the unpatched model's liveness lower bound (bytes)

    @property
    def extra_macs(self) -> int:
        return self.macs - self.layer_macs

    @property
    def extra_fraction(self) -> float:
        return self.extra_macs / self.model_macs if self.model_macs else 0.0

    def describe(self) -> str:
        return (f"patch-based inference: the first {self.split} calls run in {self.patches} row bands; "
                f"receptive-field overlap costs {self.extra_macs:,} extra MACs "
                f"({100 * self.extra_fraction:.1f}% of {self.model_macs:,}); arena bound {self.lower_bound:,} B, "
                f"{self.lower_bound / max(self.layerwise_bound, 1):.2f}x the layer-by-layer bound {self.layerwise_bound:,} B")


def spec_macs(spec, output_shape) -> int:
    """Multiply-accumulates of one int8 kernel (convolutions and fully connected; others 0)."""
    outputs = int(np.prod(output_shape))
    weight = spec.reads[1] if len(spec.reads) > 1 else None
    if spec.op_name == "conv2d":
        return outputs * int(np.prod(weight.shape[1:]))
    if spec.op_name == "depthwise_conv2d":
        return outputs * int(weight.shape[1]) * int(weight.shape[2])
    if spec.op_name == "fully_connected":
        return outputs * (int(weight.size) // int(output_shape[-1]))
    return 0


def chain_layers(builder, workspace_bytes: Sequence[int] = ()) -> Tuple[List[Layer], int]:
    """The model's leading chain of patchable convolutions, and how many of them may be the split
    point's prefix (an intermediate inside the patched stage must be read by the next call only)."""
    layers: List[Layer] = []
    readers: Dict[str, List[int]] = {}
    for index, call in enumerate(builder.calls):
        for name in call.args:
            readers.setdefault(name, []).append(index)
    max_split = 0
    for index, (call, spec) in enumerate(zip(builder.calls, builder.specs)):
        source, output = call.args[0], call.args[-1]
        if spec.rows is None or builder.tensors[output].kind != ir.INTERMEDIATE:
            break
        if index == 0 and builder.tensors[source].kind != ir.INPUT:
            break
        if index > 0 and source != builder.calls[index - 1].args[-1]:
            break
        in_shape, out_shape = builder.tensors[source].shape, builder.tensors[output].shape
        if len(in_shape) != 4 or len(out_shape) != 4 or in_shape[0] != 1:
            break
        layers.append(Layer(index, spec.rows.kernel, spec.rows.stride, spec.rows.pad_top, in_shape[1], out_shape[1],
                            in_shape[2] * in_shape[3], out_shape[2] * out_shape[3],
                            spec_macs(spec, out_shape) // out_shape[1],
                            workspace_bytes[index] if index < len(workspace_bytes) else 0))
        max_split = index + 1
        if readers[output] != [index, index + 1]:
            break  # read again later (a residual): it can end the patched stage, not sit inside it
    return layers, max_split


def band_rows(layers: Sequence[Layer], split: int, patches: int) -> Tuple[BandRows, ...]:
    """Rows of every layer of the patched stage, per band: the split output's rows divided evenly,
    then each layer's input rows from its receptive field, back to the model input."""
    rows = layers[split - 1].out_rows
    bands = []
    for band in range(patches):
        first, last = band * rows // patches, (band + 1) * rows // patches
        per_layer = []
        for layer in reversed(layers[:split]):
            in_first, in_last = layer.input_rows(first, last)
            per_layer.append((in_first, in_last, first, last))
            first, last = in_first, in_last
        bands.append(tuple(reversed(per_layer)))
    return tuple(bands)


def live_bytes_per_call(model: ir.LoweredModel) -> List[int]:
    """Bytes of arena tensors live at each call of ``model`` (the planner's lifetimes)."""
    from .planner import arena_buffers

    live = [0] * len(model.calls)
    for buf in arena_buffers(model).values():
        for step in range(buf.first, buf.last + 1):
            live[step] += buf.size
    return live


def plan_for(layers: Sequence[Layer], split: int, patches: int, rest_live: Sequence[int], model_macs: int) -> PatchPlan:
    """One plan's MACs and exact liveness bound. ``rest_live[k]``: live bytes at unpatched call k."""
    bands = band_rows(layers, split, patches)
    last = layers[split - 1]
    split_bytes = last.out_rows * last.out_row_elements
    peak = max(rest_live[split:], default=0)
    macs = 0
    for band_index, band in enumerate(bands):
        for j, (in_first, in_last, out_first, out_last) in enumerate(band):
            layer = layers[j]
            macs += (out_last - out_first) * layer.macs_per_row
            live = layer.workspace_bytes
            if j > 0:
                live += (in_last - in_first) * layer.in_row_elements
            if j < split - 1:
                live += (out_last - out_first) * layer.out_row_elements
            if band_index > 0 or j == split - 1:
                live += split_bytes  # the split output is alive from the first band's last call on
            peak = max(peak, live)
    layer_macs = sum(layer.out_rows * layer.macs_per_row for layer in layers[:split])
    return PatchPlan(split, patches, bands, macs, layer_macs, model_macs, peak, max(rest_live, default=0))


def candidate_plans(builder, model: ir.LoweredModel) -> List[PatchPlan]:
    """Every split point (2 or more calls, followed by at least one call) and band count (2 up to the
    split output's rows) of ``builder``'s chain, ``model`` being its unpatched lowering."""
    workspaces = [sum(model.tensors[a].nbytes for a in dict.fromkeys(call.args) if model.tensors[a].kind == ir.WORKSPACE)
                  for call in model.calls]
    layers, max_split = chain_layers(builder, workspaces)
    live = live_bytes_per_call(model)
    model_macs = sum(spec_macs(spec, builder.tensors[call.args[-1]].shape)
                     for call, spec in zip(builder.calls, builder.specs))
    plans = []
    for split in range(2, min(max_split, len(builder.calls) - 1) + 1):
        for patches in range(2, layers[split - 1].out_rows + 1):
            plans.append(plan_for(layers, split, patches, live, model_macs))
    return plans


def _check_plan(layers: Sequence[Layer], max_split: int, plan: PatchPlan) -> None:
    if not 1 <= plan.split <= max_split or band_rows(layers, plan.split, plan.patches) != plan.bands:
        raise CompileError(f"patch plan ({plan.split} calls, {plan.patches} bands) does not fit this model's "
                           f"chain of {max_split} patchable convolutions")


def apply(builder, plan: PatchPlan) -> Dict[str, Tuple[str, int, int]]:
    """Rewrite ``builder``'s first ``plan.split`` calls band by band. Returns the pointer-offset
    wrappers to emit: wrapper symbol -> (band kernel symbol, input offset, output offset) in
    elements (int8: bytes)."""
    layers, max_split = chain_layers(builder)
    _check_plan(layers, max_split, plan)
    stage, specs = builder.calls[:plan.split], builder.specs[:plan.split]
    wrappers: Dict[str, Tuple[str, int, int]] = {}
    calls: List[ir.KernelCall] = []
    for band in plan.bands:
        previous = None
        for j, (in_first, in_last, out_first, out_last) in enumerate(band):
            layer, call, spec = layers[j], stage[j], specs[j]
            pad_top = layer.pad_top + in_first - out_first * layer.stride
            kernel = f"{call.func_name}_in{in_last - in_first}_out{out_last - out_first}_pad{pad_top}"
            if kernel not in builder.funcs:
                builder.funcs[kernel] = spec.band_kernel(in_last - in_first, out_last - out_first, pad_top)
            source = call.args[0] if j == 0 else previous
            if j == plan.split - 1:
                output = call.args[-1]
            else:
                output = builder._fresh("intermediate")
                shape = builder.tensors[call.args[-1]].shape
                builder.tensors[output] = ir.Tensor(output, (1, out_last - out_first) + tuple(shape[2:]), "int8",
                                                    ir.INTERMEDIATE)
            in_offset = in_first * layer.in_row_elements if j == 0 else 0
            out_offset = out_first * layer.out_row_elements if j == plan.split - 1 else 0
            symbol = kernel + (f"_from_row{in_first}" if in_offset else "") + (f"_to_row{out_first}" if out_offset else "")
            if symbol != kernel:
                wrappers[symbol] = (kernel, in_offset, out_offset)
            calls.append(ir.KernelCall(symbol, [source] + call.args[1:-1] + [output], [output]))
            previous = output
    for call in stage:
        builder.funcs.pop(call.func_name, None)  # the whole-layer kernels are no longer called
    builder.calls[:plan.split] = calls
    builder.specs[:plan.split] = [None] * len(calls)
    return wrappers


def with_wrappers(c_kernels: dict, wrappers: Dict[str, Tuple[str, int, int]]) -> dict:
    """``c_kernels`` (symbol -> CKernel) with each wrapper taking its band kernel's workspaces."""
    return {**c_kernels, **{symbol: c_kernels[kernel] for symbol, (kernel, _, _) in wrappers.items()}}


def wrappers_c(model_tensors: Dict[str, ir.Tensor], calls: Sequence[ir.KernelCall],
               wrappers: Dict[str, Tuple[str, int, int]]) -> str:
    """C99 for the wrappers: the band kernel on a band of rows of the model input (first layer) or of
    the split output (last layer), one pointer offset each."""
    from .runtime_gen import c_type

    first_call = {}
    for call in calls:
        first_call.setdefault(call.func_name, call)
    text = []
    for symbol, (kernel, in_offset, out_offset) in wrappers.items():
        call = first_call[symbol]
        output_index = call.args.index(call.writes[0])
        params = ", ".join(f"{c_type(model_tensors[a].dtype)}* a{i}" for i, a in enumerate(call.args))
        args = []
        for i in range(len(call.args)):
            offset = in_offset if i == 0 else out_offset if i == output_index else 0
            args.append(f"a{i} + {offset}" if offset else f"a{i}")
        text.append(f"\n/* {kernel} on a band of rows of a whole tensor (patch-based inference) */\n"
                    f"int32_t {symbol}({params}) {{\n  return {kernel}({', '.join(args)});\n}}\n")
    return "".join(text)


def _integer_builder(model_path, model_name: str):
    """The integer path's builder of ``model_path`` (specs and calls, kernels not compiled), or None."""
    from pathlib import Path

    from ..naming import c_identifier
    from . import frontend, qnn

    path = Path(model_path)
    if path.suffix.lower() != ".tflite" or not path.is_file():
        return None
    model, subgraph, op_names, input_names, output_names = frontend.read_tflite(path, path.read_bytes())
    return qnn.lower_tflite_int8(model, subgraph, op_names, input_names, output_names,
                                 f"tvmgen_{c_identifier(model_name)}_")


def search(model_path, lowered: ir.LoweredModel) -> List[PatchPlan]:
    """Candidate plans of ``model_path`` (already lowered unpatched as ``lowered``), fewest MACs first."""
    builder = _integer_builder(model_path, lowered.name)
    if builder is None:
        return []
    plans = candidate_plans(builder, lowered)
    return sorted(plans, key=lambda p: (p.macs, p.lower_bound, p.patches, p.split))


def smallest_plan(plans: Sequence[PatchPlan], max_extra_fraction: Optional[float] = None,
                  below: Optional[int] = None) -> Optional[PatchPlan]:
    """The plan with the smallest arena bound (then fewest MACs), among those adding at most
    ``max_extra_fraction`` of the model's MACs and bounded below ``below`` bytes; None if none."""
    eligible = [p for p in plans if (max_extra_fraction is None or p.extra_fraction <= max_extra_fraction)
                and (below is None or p.lower_bound < below)]
    return min(eligible, key=lambda p: (p.lower_bound, p.macs)) if eligible else None


# Compiling a plan takes a few seconds (VWW); a plan whose greedy placement misses its liveness
# bound is rare, so a few are tried before refusing.
_BUILD_ATTEMPTS = 4


def lower_within_budget(model_path, budget: Optional[int], model_name: str = "default", target="c",
                        mcpu: Optional[str] = None, lowered: Optional[ir.LoweredModel] = None, chooser=None):
    """(LoweredModel, arena Plan, PatchPlan or None): the unpatched model if its arena fits ``budget``
    bytes (or no budget is given), else the cheapest patch plan whose arena fits. Raises CompileError
    naming the smallest arena reachable when none does. ``lowered``: the model already lowered
    unpatched with the same options (saves lowering it again). ``chooser``: tuned knobs (lower_model)."""
    from .lowering import lower_model
    from .planner import plan_model

    if lowered is None:
        lowered = lower_model(model_path, model_name=model_name, target=target, mcpu=mcpu, chooser=chooser)
    plan = plan_model(lowered)
    if budget is None or plan.arena_size <= budget:
        return lowered, plan, None
    candidates = search(model_path, lowered)
    fitting = [p for p in candidates if p.lower_bound <= budget]
    for patch in fitting[:_BUILD_ATTEMPTS]:
        patched = lower_model(model_path, model_name=model_name, target=target, mcpu=mcpu, patch_plan=patch, chooser=chooser)
        patched_plan = plan_model(patched)
        if patched_plan.arena_size <= budget:
            return patched, patched_plan, patch
    smallest, how = plan.arena_size, "layer by layer; no leading chain of int8 convolutions to run in bands"
    if candidates:
        best = smallest_plan(candidates)
        reached = plan_model(lower_model(model_path, model_name=model_name, target=target, mcpu=mcpu,
                                         patch_plan=best, chooser=chooser)).arena_size
        if reached < smallest:
            smallest, how = reached, (f"the first {best.split} calls in {best.patches} row bands, "
                                      f"+{100 * best.extra_fraction:.1f}% MACs")
    raise CompileError(f"memory budget {budget} B cannot be met: the smallest arena reachable is {smallest} B ({how})")
