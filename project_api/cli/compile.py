"""``tvmc compile MODEL -o model.tar --output-format mlf``: an ONNX/TFLite model -> an MLF v7 archive.

Accepts the legacy microTVM command lines users have in scripts (``--target='c -keys=cpu
-model=host' --runtime=crt --runtime-crt-system-lib 1 --executor=aot --pass-config
tir.disable_vectorize=1``): each legacy flag is mapped or ignored with a one-line note on stderr.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from . import TVMCError

DEFAULT_OUTPUT = "module.tar"  # legacy tvmc's default


def _note(message: str) -> None:
    print(f"tvmc: note: {message}", file=sys.stderr)


def parse_target(text: str, mcpu: Optional[str]) -> Tuple[str, Optional[str]]:
    """Return (target for lower_model, mcpu): "c", or a JSON dict string for an LLVM target.

    Legacy strings are mapped: ``c -keys=cpu -model=host -mcpu=cortex-m4`` -> "c" with mcpu
    cortex-m4; ``llvm -mtriple=... -mcpu=...`` -> the equivalent JSON dict (TVM 0.27 rejects
    target strings with options).
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            spec = json.loads(text)
        except ValueError as err:
            raise TVMCError(f"--target is not valid JSON ({err}); use e.g. --target c or '{{\"kind\": \"llvm\", ...}}'")
        if not isinstance(spec, dict) or spec.get("kind") not in ("c", "llvm"):
            raise TVMCError("--target JSON must be an object whose \"kind\" is \"c\" or \"llvm\"")
        if spec["kind"] == "c":
            return "c", spec.get("mcpu", mcpu)
        return json.dumps(spec, sort_keys=True), mcpu
    try:
        words = shlex.split(text)
    except ValueError as err:
        raise TVMCError(f"cannot parse --target {text!r} ({err})")
    if not words:
        raise TVMCError("--target is empty; use --target c")
    kind, options = words[0], {}
    for word in words[1:]:
        if not word.startswith("-"):
            raise TVMCError(f"cannot parse --target option {word!r}; expected -key=value")
        key, _, value = word.lstrip("-").partition("=")
        options[key] = value
    if options.get("mcpu"):
        if mcpu and mcpu != options["mcpu"]:
            raise TVMCError(f"--mcpu {mcpu} contradicts -mcpu={options['mcpu']} in --target")
        mcpu = options["mcpu"]
    ignored = sorted(k for k in options if k != "mcpu" and (kind == "c" or k not in ("mtriple", "mattr", "mfloat-abi")))
    if kind == "c":
        if words[1:]:
            _note(f"legacy target {text!r} mapped to --target c" + (f" --mcpu {mcpu}" if mcpu else "")
                  + (f" (ignored: {', '.join('-' + k for k in ignored)})" if ignored else ""))
        return "c", mcpu
    if kind == "llvm":
        spec = {"kind": "llvm"}
        for key in ("mtriple", "mfloat-abi"):
            if options.get(key):
                spec[key] = options[key]
        if options.get("mattr"):
            spec["mattr"] = options["mattr"].split(",")
        if mcpu:
            spec["mcpu"] = mcpu
        if words[1:]:
            _note(f"legacy target {text!r} mapped to {json.dumps(spec)}"
                  + (f" (ignored: {', '.join('-' + k for k in ignored)})" if ignored else ""))
        return json.dumps(spec, sort_keys=True), mcpu
    raise TVMCError(f"target kind {kind!r} is not supported; use --target c or an LLVM target as JSON")


def format_report(lowered, plan, out_path: Path, executor: str, target: str) -> str:
    from ..compiler.mlf import MLF_VERSION, memory_report

    report = memory_report(lowered, plan)
    ratio = f"{report['arena_bytes'] / report['lower_bound_bytes']:.2f}x" if report["lower_bound_bytes"] else "-"
    lines = [
        f"compiled model {lowered.name!r} -> {out_path} (Model Library Format v{MLF_VERSION}, "
        f"executor {executor}, target {target})",
        f"arena {report['arena_bytes']} B (liveness lower bound {report['lower_bound_bytes']} B, {ratio}); "
        f"weights {report['weight_bytes']} B; inputs+outputs {report['io_bytes']} B (caller buffers)",
    ]
    if report["placements"]:
        width = max(6, *(len(p["name"]) for p in report["placements"]))
        lines.append(f"  {'tensor':<{width}}  {'kind':<12}  {'offset':>8}  {'bytes':>8}  calls")
        for p in report["placements"]:
            lines.append(f"  {p['name']:<{width}}  {p['kind']:<12}  {p['offset']:>8}  {p['size']:>8}  "
                         f"{p['first_call']}..{p['last_call']}")
    for note in lowered.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _tuning_chooser(path: Optional[str]):
    """The best knobs per kernel signature of a records file (None without one)."""
    if path is None:
        return None
    from ..tune.records import RecordsError, chooser_from_file

    if not Path(path).is_file():
        raise TVMCError(f"--tuning-records {path}: file not found; make one with tvmc tune")
    try:
        chooser, board, count = chooser_from_file(Path(path))
    except RecordsError as err:
        raise TVMCError(str(err))
    _note(f"tuning records {path}: best knobs of {count} kernels measured on {board}")
    return chooser


class CompileCommand:
    name = "compile"
    help = "compile an ONNX or TFLite model into a Model Library Format archive"

    def add_arguments(self, parser, argv: List[str]) -> None:
        parser.add_argument("model", help="the model file (.onnx or .tflite)")
        parser.add_argument("-o", "--output", default=DEFAULT_OUTPUT, help=f"the archive to write (default {DEFAULT_OUTPUT})")
        parser.add_argument("-f", "--output-format", default="mlf", help="mlf (Model Library Format), the only format")
        parser.add_argument("--executor", default="aot", choices=("aot", "graph"),
                            help="executor recorded in the archive; the static runtime drives both (default aot)")
        parser.add_argument("--target", default="c",
                            help="c (default), an LLVM target as JSON, or a legacy target string such as 'c -mcpu=cortex-m4'")
        parser.add_argument("--mcpu", help="the CPU to generate code for, e.g. cortex-m4")
        parser.add_argument("--model-name", default="default", help="names the C interface tvmgen_<name>_run (default 'default')")
        parser.add_argument("--tuning-records", metavar="RECORDS.jsonl",
                            help="tvmc tune's records: each kernel takes its best measured knobs")
        legacy = parser.add_argument_group("legacy microTVM flags (accepted; mapped or ignored with a note)")
        legacy.add_argument("--runtime", help="legacy: only crt existed; the static runtime needs no runtime")
        legacy.add_argument("--runtime-crt-system-lib", metavar="0|1", help="legacy: there is no system library")
        legacy.add_argument("--executor-aot-unpacked-api", metavar="0|1", help="legacy: kernels are always unpacked")
        legacy.add_argument("--executor-aot-interface-api", metavar="c|packed", help="legacy: the interface is always c")
        legacy.add_argument("--target-c-mcpu", metavar="CPU", help="legacy spelling of --mcpu")
        legacy.add_argument("--pass-config", action="append", default=[], metavar="KEY=VALUE",
                            help="legacy TVM pass configuration (repeatable)")

    def _map_legacy(self, args) -> None:
        if args.runtime is not None:
            if args.runtime.split()[0] != "crt":
                raise TVMCError(f"--runtime {args.runtime!r} is not supported; microcontroller archives use the static runtime")
            _note("--runtime=crt ignored: the archive carries its own static runtime, no CRT is needed")
        if args.runtime_crt_system_lib is not None:
            _note("--runtime-crt-system-lib ignored: kernels are called directly, there is no system library")
        if args.executor_aot_unpacked_api is not None:
            _note("--executor-aot-unpacked-api ignored: kernels always use the unpacked (plain C) ABI")
        if args.executor_aot_interface_api is not None:
            if args.executor_aot_interface_api != "c":
                raise TVMCError("--executor-aot-interface-api packed is not supported; the interface is tvmgen_<name>_run (c)")
            _note("--executor-aot-interface-api=c is the only interface: ignored")
        if args.target_c_mcpu:
            if args.mcpu and args.mcpu != args.target_c_mcpu:
                raise TVMCError(f"--mcpu {args.mcpu} contradicts --target-c-mcpu {args.target_c_mcpu}")
            args.mcpu = args.target_c_mcpu
            _note(f"--target-c-mcpu mapped to --mcpu {args.mcpu}")
        for item in args.pass_config:
            key, sep, _value = item.partition("=")
            if not sep:
                raise TVMCError(f"--pass-config {item!r} must be KEY=VALUE")
            if key in ("tir.disable_vectorize", "tirx.disable_vectorize"):
                _note(f"--pass-config {item} ignored: vectorization is always off for plain-C kernels")
            else:
                _note(f"--pass-config {item} ignored: not used by this compiler")

    def run(self, args) -> int:
        if args.output_format != "mlf":
            raise TVMCError(f"--output-format {args.output_format!r} is not supported; use --output-format mlf")
        self._map_legacy(args)
        target, mcpu = parse_target(args.target, args.mcpu)
        model_path = Path(args.model)
        if not model_path.is_file():
            raise TVMCError(f"model file {model_path} not found; give the path of a .onnx or .tflite file")
        out_path = Path(args.output)
        if out_path.is_dir():
            raise TVMCError(f"--output {out_path} is a directory; give the path of the .tar to write")

        from ..compiler.errors import CompileError
        from ..compiler.lowering import lower_model
        from ..compiler.mlf import export_mlf
        from ..compiler.planner import plan_model
        from ..compiler.runtime_gen import generate_runtime

        chooser = _tuning_chooser(args.tuning_records)
        try:
            lowered = lower_model(str(model_path), model_name=args.model_name, target=target, mcpu=mcpu,
                                  chooser=chooser)
            plan = plan_model(lowered)
            runtime = generate_runtime(lowered, plan)
            export_mlf(lowered, out_path, executor=args.executor, plan=plan, runtime=runtime)
        except CompileError as err:
            raise TVMCError(" ".join(str(err).split()))
        except FileNotFoundError as err:
            raise TVMCError(f"{err.filename or err}: file not found")
        except PermissionError as err:
            raise TVMCError(f"cannot write {err.filename or out_path}: permission denied")
        print(format_report(lowered, plan, out_path, args.executor, target))
        return 0
