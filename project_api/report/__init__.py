"""The model report of ``tvmc compile --report report.html`` (and the summary ``tvmc compile`` prints).

Per kernel: op, shapes, MACs, weight bytes, arena slot, code bytes; totals: ROM (weights + code,
measured with the target's cross compiler), RAM (arena, inputs/outputs, state, stack from
``-fstack-usage``), the liveness lower bound and tflite-micro's arena; pictures of the arena plan
and of the layers. ``tvmc run --profile`` adds the kernels' measured times (``KernelTimes``).
"""

from __future__ import annotations

import dataclasses
import html
from pathlib import Path
from typing import List, Optional, Sequence, Union

from . import footprint as _footprint
from . import pictures
from .model import Kernel, ModelDescription, describe_mlf
from .tflm import TflmArena, tflm_arena

__all__ = ["Report", "KernelTimes", "build_report", "describe_mlf", "format_profile"]


@dataclasses.dataclass
class KernelTimes:
    """Per-kernel figures measured on the device by ``tvmc run --profile``."""

    seconds: List[float]          # per run, call order
    total_seconds: float          # the whole model per run, from time_evaluate in the same session
    unit: str                     # "cycles" (the timer counts CPU cycles), "instructions" (QEMU -icount) or ""
    counts: Optional[List[float]] # per run, in `unit` (None when unit is "")
    total_count: Optional[float]
    runs: int
    note: str = ""


@dataclasses.dataclass
class Report:
    model: ModelDescription
    footprint: Optional[_footprint.Footprint]
    tflm: Optional[TflmArena]
    state_bytes: int = 0          # persistent state between runs (SVDF-style); none in today's kernels
    profile: Optional[KernelTimes] = None

    @property
    def ram_bytes(self) -> int:
        stack = self.footprint.stack_bytes if self.footprint else 0
        return self.model.arena_bytes + self.model.io_bytes + self.state_bytes + stack

    # -- text ------------------------------------------------------------------------------
    def kernel_rows(self) -> List[List[str]]:
        code = self.footprint.function_code if self.footprint else {}
        rows = []
        for k in self.model.kernels:
            rows.append([str(k.index), k.op, _shapes(k), f"{k.macs:,}" if k.macs else "-", f"{k.weight_bytes:,}",
                         _slot(k), f"{code[k.func_name]:,}" if k.func_name in code else "-"])
        return rows

    def totals(self) -> List[List[str]]:
        m, fp = self.model, self.footprint
        rows = []
        if fp is not None:
            where = fp.compiler if fp.cross else f"{fp.compiler} (the host's compiler: not a microcontroller's figures)"
            rows.append(["ROM", f"{fp.rom_bytes:,} B",
                         f"weights {fp.weight_bytes:,} B (.rodata; model weights {m.weight_bytes:,} B) + code "
                         f"{fp.code_bytes:,} B (.text)" + (f" + .data {fp.data_bytes:,} B" if fp.data_bytes else "")
                         + f", {where}"])
        else:
            rows.append(["ROM", f">= {m.weight_bytes:,} B", "weights only: no C compiler to measure the code"])
        stack = (f" + stack {fp.stack_bytes:,} B (-fstack-usage: run + deepest kernel + deepest helper)"
                 if fp is not None else "")
        rows.append(["RAM", f"{self.ram_bytes:,} B",
                     f"arena {m.arena_bytes:,} B + inputs/outputs {m.io_bytes:,} B + state {self.state_bytes:,} B"
                     + stack])
        ratio = f"{m.arena_bytes / m.lower_bound_bytes:.2f}x" if m.lower_bound_bytes else "-"
        rows.append(["arena", f"{m.arena_bytes:,} B", f"liveness lower bound {m.lower_bound_bytes:,} B ({ratio})"])
        if self.tflm is not None:
            rows.append(["tflite-micro arena", f"{self.tflm.total_bytes:,} B",
                         f"tensors {self.tflm.head_bytes:,} B (inputs/outputs included) + persistent "
                         f"{self.tflm.tail_bytes:,} B"])
        rows.append(["MACs", f"{m.total_macs:,}", f"{len(m.kernels)} kernel calls"])
        return rows

    def code_note(self) -> str:
        """Why some kernels show a few bytes of code: gcc folds a kernel identical to an earlier
        one (same shapes, other weights) into a branch to it (-fipa-icf, on at -Os)."""
        code = self.footprint.function_code if self.footprint else {}
        if any(0 < code.get(k.func_name, 99) <= 8 for k in self.model.kernels):
            return ("code B: the kernel's function; one identical to an earlier kernel is folded by the compiler "
                    "into a branch to it (a few bytes)")
        return ""

    def format_text(self) -> str:
        lines = [_table(["call", "op", "shapes (in -> out)", "MACs", "weights B", "arena slot", "code B"],
                        self.kernel_rows(), right={3, 4, 6})]
        if self.code_note():
            lines.append("  " + self.code_note())
        lines += [f"{name} {value}: {detail}" for name, value, detail in self.totals()]
        if self.profile is not None:
            lines.append(format_profile(self.model, self.profile))
        return "\n".join(lines)

    # -- html ------------------------------------------------------------------------------
    def write_html(self, path: Union[str, Path]) -> List[Path]:
        """Write the report (pictures inline as SVG) and its pictures as PNG beside it; return the files."""
        path = Path(path)
        seconds = self.profile.seconds if self.profile else None
        arena_svg = pictures.arena_figure(self.model, "svg")
        layers_svg = pictures.layers_figure(self.model, "svg", seconds)
        m = self.model
        parts = [
            "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
            f"<title>Model report: {html.escape(m.name)}</title>",
            "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
            "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}"
            "td.n{text-align:right;font-variant-numeric:tabular-nums}</style></head><body>",
            f"<h1>Model report: {html.escape(m.name)}</h1>",
            "<h2>Totals</h2>", _html_table(["", "bytes / count", "what"], self.totals(), right={1}),
            "<h2>Arena plan</h2>", arena_svg,
            "<h2>Layers</h2>", layers_svg,
            "<h2>Kernels</h2>",
            _html_table(["call", "op", "shapes (in -> out)", "MACs", "weights B", "arena slot", "code B"],
                        self.kernel_rows(), right={3, 4, 6}),
            f"<p>{html.escape(self.code_note())}</p>" if self.code_note() else "",
        ]
        if self.profile is not None:
            head, rows = profile_rows(m, self.profile)
            parts += ["<h2>Profile (measured on the device)</h2>", f"<p>{html.escape(profile_caption(self.profile))}</p>",
                      _html_table(head, rows, right=set(range(2, len(head))))]
        parts += ["<h2>Arena tensors</h2>",
                  _html_table(["tensor", "kind", "offset", "bytes", "calls"],
                              [[p.name, p.kind, str(p.offset), f"{p.size:,}", f"{p.first_call}..{p.last_call}"]
                               for p in m.placements], right={2, 3})]
        if m.notes:
            parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in m.notes] + ["</ul>"]
        parts.append("</body></html>")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts), encoding="utf-8")
        written = [path]
        for stem, png in (("arena", pictures.arena_figure(m, "png")), ("layers", pictures.layers_figure(m, "png", seconds))):
            png_path = path.with_name(f"{path.stem}.{stem}.png")
            png_path.write_bytes(png)
            written.append(png_path)
        return written


def build_report(mlf_path: Union[str, Path], mcpu: Optional[str] = None,
                 model_path: Optional[Union[str, Path]] = None, measure_footprint: bool = True) -> Report:
    """The report of an MLF written by tvmc compile; ``model_path`` (the .tflite) adds tflite-micro's arena."""
    from concurrent.futures import ThreadPoolExecutor

    model = describe_mlf(mlf_path)
    # tflite-micro runs in a child process: let it overlap the cross compiler's runs.
    with ThreadPoolExecutor(max_workers=1) as pool:
        tflm = pool.submit(tflm_arena, Path(model_path)) if model_path is not None else None
        fp = _footprint.measure(model.sources, model.header_name, model.header, model.c_name, mcpu) \
            if measure_footprint else None
        return Report(model, fp, tflm.result() if tflm is not None else None)


# -- profile table -----------------------------------------------------------------------------
def profile_rows(model: ModelDescription, times: KernelTimes):
    unit = times.unit
    head = ["call", "op", "us", "% of total"] + ([unit, f"{unit}/MAC"] if unit else [])
    order = sorted(range(len(times.seconds)), key=lambda i: -times.seconds[i])
    measured = sum(times.seconds) or 1.0
    rows = []
    for i in order:
        k = model.kernels[i] if i < len(model.kernels) else None
        row = [str(i), k.op if k else "?", f"{times.seconds[i] * 1e6:,.1f}", f"{100 * times.seconds[i] / measured:.1f}"]
        if unit:
            count = times.counts[i]
            row += [f"{count:,.0f}", f"{count / k.macs:.2f}" if k and k.macs else "-"]
        rows.append(row)
    total = ["", "sum of kernels", f"{measured * 1e6:,.1f}", "100.0"]
    whole = ["", "whole model (time_evaluate)", f"{times.total_seconds * 1e6:,.1f}",
             f"{100 * times.total_seconds / measured:.1f}"]
    if unit:
        macs = model.total_macs
        total += [f"{sum(times.counts):,.0f}", f"{sum(times.counts) / macs:.2f}" if macs else "-"]
        whole += [f"{times.total_count:,.0f}", f"{times.total_count / macs:.2f}" if macs else "-"]
    return head, rows + [total, whole]


def profile_caption(times: KernelTimes) -> str:
    text = f"Mean per run over {times.runs} runs, sorted by time."
    return text + (f" {times.note}" if times.note else "")


def format_profile(model: ModelDescription, times: KernelTimes) -> str:
    head, rows = profile_rows(model, times)
    return f"Per-kernel profile (on the device). {profile_caption(times)}\n" + _table(head, rows, right=set(range(2, len(head))))


# -- helpers -----------------------------------------------------------------------------------
def _shapes(k: Kernel) -> str:
    ins = [t for t in k.reads if t.kind != "constant"]
    return " ".join("x".join(map(str, t.shape)) for t in ins) + " -> " + "x".join(map(str, k.output.shape))


def _slot(k: Kernel) -> str:
    out = k.output
    if out.arena_offset >= 0:
        return f"arena@{out.arena_offset}+{out.nbytes}"
    return out.kind  # a caller-owned output buffer


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], right=frozenset()) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(head, *rows)]
    fmt = lambda row: "  " + "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                                       for i, (c, w) in enumerate(zip(row, widths))).rstrip()
    return "\n".join([fmt(head)] + [fmt(r) for r in rows])


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], right=frozenset()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td class='n'>{html.escape(c)}</td>" if i in right else f"<td>{html.escape(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    return "".join(out) + "</table>"
