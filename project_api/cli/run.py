"""``tvmc run --device micro PROJECT_DIR``: host-driven inference on a generated project's device.

As the legacy tvmc: inputs from ``--inputs in.npz`` (by input name) or ``--fill-mode``, outputs to
``--outputs out.npz`` (keys ``output_0``, ``output_1`` ...), ``--print-top N``, ``--print-time``
with ``--repeat``/``--number``; the timing is measured on the device with its own timer.
The device is reached through the project's Project API server (open_transport), so the same
command drives the host board, an emulator or a board on a serial port.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Dict, List

import numpy as np

from .. import client, errors
from ..rpc.transport import ProjectAPITransport
from ..session import MAX_TIMED_RUNS, Session
from . import TVMCError
from ._output import check_output_path, write_atomically
from ._options import (add_project_option_argument, call, check_project_options, declared_options,
                       options_for_project, parse_project_options, project_api_server, recorded_options)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive integer")
    return value


def _runs_per_measurement(text: str) -> int:
    value = _positive(text)
    if value > MAX_TIMED_RUNS:
        raise argparse.ArgumentTypeError(f"{value} is more than the {MAX_TIMED_RUNS} runs a device times in one "
                                         f"measurement; raise --repeat instead")
    return value


def fill(mode: str, dtype: str, shape, rng: np.random.Generator) -> np.ndarray:
    """An input of the given dtype and shape filled as --fill-mode says."""
    dt = np.dtype(dtype)
    if mode == "zeros":
        return np.zeros(shape, dt)
    if mode == "ones":
        return np.ones(shape, dt)
    if dt.kind == "f":
        return rng.random(shape, dtype=np.float64).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


NPZ_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive of .npy files


def read_inputs_file(path) -> Dict[str, np.ndarray]:
    """The arrays of an .npz file by name (read before the device is started)."""
    hint = "it must be a .npz written by numpy.savez(path, name=array, ...)"
    try:
        with open(path, "rb") as f:
            magic = f.read(len(NPZ_MAGIC))
        if magic != NPZ_MAGIC:
            kind = "a single-array .npy file" if magic == b"\x93NUM" else "not an .npz archive"
            raise TVMCError(f"inputs file {path} is {kind}; {hint}")
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        detail = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise TVMCError(f"cannot read inputs file {path}: {detail} ({hint})") from err


def load_inputs(given: Dict[str, np.ndarray], path, inputs, fill_mode: str) -> Dict[str, np.ndarray]:
    """Inputs by name from ``given`` (the --inputs file at ``path``), the rest filled; names the
    model lacks are an error."""
    names = [t.name for t in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise TVMCError(f"inputs file {path} has {', '.join(unknown)}, which the model does not have; "
                        f"its inputs are: {', '.join(names)}")
    rng = np.random.default_rng()
    return {t.name: given[t.name] if t.name in given else fill(fill_mode, t.dtype, t.shape, rng) for t in inputs}


def outputs_path(option_value: str) -> pathlib.Path:
    """The file --outputs writes: numpy.savez's name (".npz" appended when missing), checked now,
    before the device runs."""
    path = pathlib.Path(option_value)
    if path.is_dir():
        raise TVMCError(f"--outputs {path} is a directory; give the path of the .npz file to write")
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    return check_output_path(path, "--outputs")


def format_top(key: str, name: str, array: np.ndarray, n: int) -> str:
    flat = array.reshape(-1)
    order = np.argsort(-flat.astype(np.float64), kind="stable")[:n]
    rows = [f"top {len(order)} of {key} ({name}):", "  index  value"]
    rows += [f"  {int(i):5d}  {flat[i]}" for i in order]
    return "\n".join(rows)


def format_time(timing) -> str:
    head = f"{'mean (ms)':>12} {'median (ms)':>12} {'max (ms)':>12} {'min (ms)':>12} {'std (ms)':>12}"
    figures = (timing.mean, timing.median, timing.max, timing.min, timing.std)
    rows = ["Execution time summary (on the device):", head, " ".join(f"{v * 1e3:12.6g}" for v in figures)]
    if timing.cycles is not None:
        rows.append(f"cycles per run: mean {sum(timing.cycles) / len(timing.cycles):.0f}, "
                    f"min {min(timing.cycles):.0f}, max {max(timing.cycles):.0f}")
    return "\n".join(rows)


class RunCommand:
    name = "run"
    help = "run a model on a micro device through its generated project (--device micro)"

    def add_arguments(self, parser: argparse.ArgumentParser, argv: List[str]) -> None:
        parser.add_argument("FILE", help="the generated project directory (from tvmc micro create)")
        parser.add_argument("--device", choices=["micro"], required=True,
                            help="where to run: 'micro' = the project's device (host board, emulator, board)")
        parser.add_argument("-i", "--inputs", help="a .npz file of inputs by name")
        parser.add_argument("--fill-mode", choices=["zeros", "ones", "random"], default="random",
                            help="how to fill inputs missing from --inputs (default: random)")
        parser.add_argument("-o", "--outputs", help="save the outputs to this .npz file (output_0, ...)")
        parser.add_argument("--print-top", type=_positive, metavar="N", help="print the top N values of each output")
        parser.add_argument("--print-time", action="store_true", help="time the model on the device")
        parser.add_argument("--repeat", type=_positive, default=1, help="timing: how many measurements (default 1)")
        parser.add_argument("--number", type=_runs_per_measurement, default=1, help="timing: runs per measurement (default 1)")
        parser.add_argument("--profile", action="store_true",
                            help="per-kernel times (cycles/instructions where the board counts them) measured on "
                                 "the device over --number runs; needs a profiling build "
                                 "(--project-option compile_definitions=TVMGEN_PROFILE at tvmc micro create)")
        parser.add_argument("--report", metavar="REPORT.html",
                            help="with --profile: write the model report with the profile (see tvmc compile --report)")
        add_project_option_argument(parser)

    def run(self, args) -> int:
        project_dir = pathlib.Path(args.FILE)
        if project_dir.is_file():
            raise TVMCError(f"{project_dir} is a file, not a project directory: give the folder "
                            f"'tvmc micro create' made (the model runs from its generated project)")
        if not project_dir.is_dir():
            raise TVMCError(f"project directory {project_dir} does not exist: generate one with "
                            f"'tvmc micro create {project_dir} MODEL.tar PLATFORM'")
        if not (project_dir / client.SERVER_PYTHON_FILENAME).is_file():
            raise TVMCError(f"{project_dir} is not a generated project (no {client.SERVER_PYTHON_FILENAME}): "
                            f"generate one with 'tvmc micro create'")
        if args.report and not args.profile:
            raise TVMCError("--report needs --profile (the model report without a profile comes from tvmc compile --report)")
        if args.report:  # before the device runs, as --outputs
            check_output_path(pathlib.Path(args.report), "--report", create_parents=True)
        given = parse_project_options(args.project_option)
        inputs_given = read_inputs_file(args.inputs) if args.inputs else {}
        out_path = outputs_path(args.outputs) if args.outputs else None
        with project_api_server(project_dir, debug=args.debug) as api:
            info = call(api, "server_info_query", "")
            check_project_options(given, declared_options(info), "open_transport", str(info.get("platform_name")),
                                  recorded_options(project_dir))
            transport = ProjectAPITransport(api, options_for_project(project_dir, given))
            try:
                with Session(transport) as session:
                    outputs = self._infer(session, inputs_given, args)
                    names = [t.name for t in session.get_info().outputs]
                    timing = session.time_evaluate(args.number, args.repeat) \
                        if args.print_time or args.profile else None
                    profiled = session.profile(args.number) if args.profile else None
            except errors.SessionError as err:
                raise TVMCError(f"device session failed: {err}") from err
            except client.RPCError as err:
                raise TVMCError(f"the project's server failed: {err.message}") from err
            except (client.ProjectAPIError, errors.IoTimeoutError, errors.TransportClosedError) as err:
                raise TVMCError(f"the project's server failed: {err}") from err
        self._report(outputs, names, timing, out_path, args)
        if profiled is not None:
            self._profile_report(project_dir, profiled, timing, args)
        return 0

    @staticmethod
    def _profile_report(project_dir: pathlib.Path, profiled, timing, args) -> None:
        from .. import report
        from ..report.profile import board_cpu, counts_instructions, kernel_times

        times = kernel_times(profiled, timing.mean, counts_instructions(project_dir))
        mlf_path = project_dir / "model.tar"
        try:
            model_report = report.build_report(mlf_path, mcpu=board_cpu(project_dir),
                                               measure_footprint=bool(args.report))
        except (OSError, ValueError, RuntimeError) as err:
            raise TVMCError(f"cannot describe the project's model {mlf_path} for the profile: {err}") from err
        if len(model_report.model.kernels) != len(times.seconds):
            raise TVMCError(f"the device profiled {len(times.seconds)} kernel calls but {mlf_path} has "
                            f"{len(model_report.model.kernels)}: build and flash the project again")
        model_report.profile = times
        print(report.format_profile(model_report.model, times))
        if args.report:
            try:
                written = model_report.write_html(args.report)
            except (OSError, RuntimeError) as err:
                raise TVMCError(f"cannot write the report {args.report}: {getattr(err, 'strerror', None) or err}")
            print(f"report: {', '.join(str(p) for p in written)}")

    @staticmethod
    def _infer(session: Session, inputs_given: Dict[str, np.ndarray], args) -> Dict[str, np.ndarray]:
        info = session.get_info()
        for name, value in load_inputs(inputs_given, args.inputs, info.inputs, args.fill_mode).items():
            session.set_input(name, value)
        session.run()
        return {f"output_{i}": session.get_output(i) for i in range(len(info.outputs))}

    @staticmethod
    def _report(outputs: Dict[str, np.ndarray], names: List[str], timing, out_path, args) -> None:
        if out_path is not None:
            with write_atomically(out_path, "--outputs") as scratch, open(scratch, "wb") as f:
                np.savez(f, **outputs)  # a file object: numpy appends no second ".npz"
        if args.print_top:
            for (key, array), name in zip(outputs.items(), names):
                print(format_top(key, name, array, args.print_top))
        if timing is not None:
            print(format_time(timing))
        if not (args.outputs or args.print_top or timing):
            for name, array in outputs.items():
                print(f"{name}: {np.array2string(array, threshold=20)}")
