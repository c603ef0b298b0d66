"""The one table that picks each integer kernel's schedule: its kind, signature, knobs and their choices.

Every kernel the integer path emits (``qnn.py``) asks ``choose(kind, params)`` for its knobs.
``params`` are what determines the kernel's code (shapes, strides, padding, the requantization
form), never the weights, so a signature names the same kernel in any model; ``signature`` turns
them into the key of the tuning records. A convolution layer's kernel is then ``conv_kernel(kind,
knobs)``: the one place that maps a layer (``ConvLayer``) and its knobs to the builder that makes
it (qnn_tvmscript.py or qnn_te.py). Without tuning records every knob takes its default:
the hand-picked schedule of docs/int8-kernels.md, so an untuned compile is byte-identical to one
made before the knobs existed. Every choice computes exactly the same integers (it reorders loops
and changes register blocking, never the arithmetic), so a tuned kernel is bit-exact with the
untuned one.

Knobs (``KNOBS``: kind -> knob -> choices):
  conv2d            method: direct (windows clipped in place), gathered (im2col: both pixels'
                    windows copied to a stack buffer), gathered_widened (im2col to the int16 lanes
                    SMLAD reads, the input offset added once per tap instead of once per channel
                    pair), widened (pointwise: each pixel pair's inputs widened once);
                    pixel_pairs (direct only: 2 pixels x 2 channels per call, or 1 x 2);
                    opt: Os (the project's level; the inner loops are O2 and not inlined) or O2
                    (the kernel at the inner loops' level, so they inline and their trip counts
                    become constants)
  depthwise_conv2d  interior (windows inside the input take the micro-kernel with the window size
                    as constants: unrolled taps once inlined), opt
  fully_connected   interleaved (4 units per call over weights interleaved at compile time, or 2
                    units per call), opt
  others (pooling, add, softmax, dilated convolutions, copies): opt
"""

from __future__ import annotations

import json
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

OPT_LEVELS = ("Os", "O2")
KNOBS: Dict[str, Dict[str, tuple]] = {
    "conv2d": {"method": ("direct", "gathered", "gathered_widened", "widened"), "pixel_pairs": (True, False),
               "opt": OPT_LEVELS},
    "depthwise_conv2d": {"interior": (False, True), "opt": OPT_LEVELS},
    "fully_connected": {"interleaved": (True, False), "opt": OPT_LEVELS},
}
OTHER_KNOBS = {"opt": OPT_LEVELS}

# Gathered windows live on the stack: two pixels' windows (int8), or their widened words (int16 lanes).
GATHER_MAX_BYTES = 512
GATHER_WIDENED_MAX_BYTES = 640

# signature -> knobs (a tuning-records lookup), or None
Chooser = Callable[[str], Optional[dict]]


def knob_space(kind: str) -> Dict[str, tuple]:
    return KNOBS.get(kind, OTHER_KNOBS)


def signature(kind: str, params: dict) -> str:
    return f"{kind}:{json.dumps(params, sort_keys=True, separators=(',', ':'))}"


class ConvLayer(NamedTuple):
    """A convolution layer as its kernel builders take it (``qnn.py`` fills it)."""

    input_shape: Tuple[int, ...]  # NHWC
    weight_shape: Tuple[int, ...]  # OHWI; depthwise [1, KH, KW, C * depth_multiplier]
    output_shape: Tuple[int, ...]  # NHWC
    strides: Tuple[int, int]
    dilations: Tuple[int, int]
    padding: Tuple[int, int]  # top, left
    depth_multiplier: int
    input_zero_point: int
    requant: object  # qnn_requant.Requant

    @property
    def params(self) -> dict:
        """What determines the kernel's code (its signature's params): never the weights."""
        return {"input_shape": list(self.input_shape), "weight_shape": list(self.weight_shape),
                "output_shape": list(self.output_shape), "strides": list(self.strides),
                "dilations": list(self.dilations), "padding": list(self.padding),
                "depth_multiplier": self.depth_multiplier, "requant": self.requant.form}


def is_pointwise(weight_shape: Sequence[int], padding: Sequence[int]) -> bool:
    """A 1x1 unpadded convolution: its windows are contiguous runs (the dot-product micro-kernels)."""
    _, kernel_h, kernel_w, _ = (int(d) for d in weight_shape)
    return kernel_h == kernel_w == 1 and tuple(padding) == (0, 0)


def gathers_windows(input_shape, weight_shape, padding) -> bool:
    """The default method of a convolution: short window rows (one or two SIMD words, as in first
    layers over one input channel) cost more in per-row overhead than in products, so such
    convolutions copy each window to a contiguous buffer first (``gathered``). The window must be a
    whole number of words. (micro_speech's rows of 8 bytes measured slower gathered.)"""
    channels = int(input_shape[3])
    _, kernel_h, kernel_w, _ = (int(d) for d in weight_shape)
    size = kernel_h * kernel_w * channels
    return kernel_w * channels < 8 and kernel_h > 1 and size % 4 == 0 and size <= 256


def depthwise_per_pixel(input_shape, depth_multiplier: int) -> bool:
    """A depthwise convolution whose kernel takes all channels of a pixel per micro-kernel call, four
    at a time (``mtp_depthwise_pixel_s8``); otherwise one call per output."""
    return depth_multiplier == 1 and int(input_shape[3]) % 4 == 0


def _interleaves(params: dict) -> bool:
    """A fully connected layer whose weights can be interleaved by four (units and depth multiples of 4)."""
    return params["units"] % 4 == 0 and params["depth"] % 4 == 0


def _conv_facts(params: dict):
    _, _, _, channels = params["input_shape"]
    out_channels, kernel_h, kernel_w, _ = params["weight_shape"]
    pointwise = is_pointwise(params["weight_shape"], params["padding"])
    return channels, kernel_h, kernel_w, pointwise, kernel_h * kernel_w * channels


def default_knobs(kind: str, params: dict) -> dict:
    """Today's hand-picked schedule (docs/int8-kernels.md)."""
    if kind == "conv2d":
        gathered = gathers_windows(params["input_shape"], params["weight_shape"], params["padding"])
        return {"method": "gathered" if gathered else "direct", "pixel_pairs": True, "opt": "Os"}
    if kind == "fully_connected":
        return {"interleaved": _interleaves(params), "opt": "Os"}
    if kind == "depthwise_conv2d":
        return {"interior": False, "opt": "Os"}
    return {"opt": "Os"}


def is_valid(kind: str, params: dict, knobs: dict) -> bool:
    """Whether ``knobs`` name a kernel the builders can make for ``params`` (and not a duplicate)."""
    space = knob_space(kind)
    if set(knobs) != set(space) or any(knobs[k] not in space[k] for k in space):
        return False
    if kind == "conv2d":
        channels, kernel_h, _, pointwise, size = _conv_facts(params)
        method = knobs["method"]
        if method != "direct" and not knobs["pixel_pairs"]:
            return False  # the other methods always pair pixels
        if method == "gathered":
            return not pointwise and size % 4 == 0 and size <= GATHER_MAX_BYTES
        if method == "gathered_widened":
            return not pointwise and size % 4 == 0 and size <= GATHER_WIDENED_MAX_BYTES
        if method == "widened":
            return pointwise and channels % 4 == 0
        return True
    if kind == "depthwise_conv2d" and knobs["interior"]:
        # the per-pixel micro-kernel only (depth multiplier 1, channels a multiple of 4)
        return depthwise_per_pixel(params["input_shape"], params["depth_multiplier"])
    if kind == "fully_connected" and knobs["interleaved"]:
        return _interleaves(params)
    return True


def candidates(kind: str, params: dict) -> List[dict]:
    """Every valid knob setting of a kernel, the default first."""
    import itertools

    space = knob_space(kind)
    names = sorted(space)
    default = default_knobs(kind, params)
    found = [default]
    for values in itertools.product(*(space[n] for n in names)):
        knobs = dict(zip(names, values))
        if knobs != default and is_valid(kind, params, knobs):
            found.append(knobs)
    return found


def choose(kind: str, params: dict, chooser: Optional[Chooser]) -> dict:
    """The knobs of one kernel: the tuned ones when ``chooser`` knows its signature, else the defaults."""
    knobs = default_knobs(kind, params)
    if chooser is not None:
        tuned = chooser(signature(kind, params))
        if tuned is not None and is_valid(kind, params, tuned):
            return dict(tuned)
    return knobs


def conv_kernel(kind: str, knobs: dict) -> Tuple[Callable, bool]:
    """The kernel of a convolution layer of ``kind`` with ``knobs`` (``choose``'s) as ``(build,
    folded_bias)``: ``build(layer: ConvLayer)`` gives its PrimFunc and requantization constants;
    ``folded_bias``: the kernel reads the bias with the input offset folded in (the TE kernels of
    qnn_te.py, over zero-point padding) instead of the raw bias (the TVMScript kernels of
    qnn_tvmscript.py, windows clipped at run time, the offset added in the micro-kernels)."""
    import functools

    from . import qnn_te, qnn_tvmscript as script

    pairs = {"pixel_pairs": knobs.get("pixel_pairs", True)}
    table = {  # (kind, method knob): builder, its options, folded_bias
        ("conv2d", "direct"): (script.conv2d_windows, pairs, False),
        ("conv2d", "widened"): (script.conv2d_windows, dict(pairs, widened=True), False),
        ("conv2d", "gathered"): (script.conv2d_gathered, {}, False),
        ("conv2d", "gathered_widened"): (script.conv2d_gathered, {"widened": True}, False),
        ("depthwise_conv2d", ""): (script.depthwise_conv2d_windows, {"interior": knobs.get("interior", False)}, False),
        ("conv2d_dilated", ""): (qnn_te.conv2d, {}, True),
        ("depthwise_conv2d_dilated", ""): (qnn_te.depthwise_conv2d, {}, True),
    }
    builder, options, folded_bias = table[(kind, knobs.get("method", ""))]
    return functools.partial(builder, **options), folded_bias


_DEFINITION = r"^(int32_t {symbol}\([^;{{]*\) \{{)"


def apply_c_knobs(kernels_c: str, knobs_by_symbol: Dict[str, dict]) -> str:
    """The knobs that act on the generated C (``opt``): the kernel's definition takes the inner
    loops' optimization attribute, so gcc inlines them (it inlines no function whose optimize
    attribute differs from its caller's)."""
    for symbol, knobs in knobs_by_symbol.items():
        if knobs.get("opt", "Os") == "O2":
            kernels_c = re.sub(_DEFINITION.format(symbol=re.escape(symbol)), r"MTP_HOT \1", kernels_c, count=1,
                               flags=re.M)
    return kernels_c
