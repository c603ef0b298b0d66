"""``tvmc tune MODEL --target c --tuning-records out.jsonl --project-option board=...``: measure kernel
variants on the board and record them (project_api/tune/, docs/tuning.md).

The legacy tvmc tune flags: ``--trials``, ``--early-stopping``, ``--timeout``, ``--repeat``,
``--number``; ``--rpc-tracker HOST:PORT --rpc-key KEY`` select the board farm's runner (issue 13).
The records file is appended to and resumed from: a candidate with a record for the board and
compiler is not measured again.
"""

from __future__ import annotations

import pathlib
import sys
from typing import List

from . import TVMCError
from ._options import add_project_option_argument, parse_project_options

DEFAULT_WORK_DIR = ".tvmc-tune"


class TuneCommand:
    name = "tune"
    help = "autotune the integer kernels of a model on a board (records for tvmc compile --tuning-records)"

    def add_arguments(self, parser, argv: List[str]) -> None:
        parser.add_argument("model", help="the int8 .tflite model to tune")
        parser.add_argument("--target", default="c", help="c (default; the kernels are C for the board's compiler)")
        parser.add_argument("--tuning-records", "-o", "--output", dest="tuning_records", required=True,
                            metavar="RECORDS.jsonl", help="JSON-lines records to append to (and resume from)")
        add_project_option_argument(parser)
        parser.add_argument("--platform", help="the template (default: the board's platform in boards.yaml)")
        parser.add_argument("--template-dir", type=pathlib.Path, help="a template directory instead of a named one")
        parser.add_argument("--trials", type=int, default=1000, help="most candidates to measure, counting those the records already hold (default 1000: all)")
        parser.add_argument("--early-stopping", type=int, metavar="N",
                            help="stop a kernel after N measured candidates without a new best")
        parser.add_argument("--timeout", type=float, default=30.0,
                            help="seconds a run may take on the board before it counts as hung (default 30)")
        parser.add_argument("--repeat", type=int, default=1, help="timed batches per candidate; the minimum counts")
        parser.add_argument("--number", type=int, default=1, help="runs per timed batch (default 1)")
        parser.add_argument("--per-image", type=int, default=8, help="most candidates per firmware image (default 8)")
        parser.add_argument("--work-dir", type=pathlib.Path, default=pathlib.Path(DEFAULT_WORK_DIR),
                            help=f"candidate images and projects, the build cache (default {DEFAULT_WORK_DIR})")
        parser.add_argument("--prior-records", nargs="+", default=[], metavar="RECORDS.jsonl",
                            help="records of other models or boards: they train the cost model (nothing is skipped)")
        parser.add_argument("--no-progress", action="store_true", help="no progress line")
        farm = parser.add_argument_group("board farm (issue 13)")
        farm.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on the farm's boards via its tracker")
        farm.add_argument("--rpc-key", metavar="KEY", help="the board type to ask the tracker for")

    def run(self, args) -> int:
        from .. import boards

        model = pathlib.Path(args.model)
        if not model.is_file():
            raise TVMCError(f"model file {model} not found; give the path of an int8 .tflite model")
        if args.target.split()[0] not in ("c",):
            raise TVMCError(f"--target {args.target!r}: tvmc tune tunes the C kernels; use --target c")
        for name in ("trials", "repeat", "number"):
            if getattr(args, name) < 1:
                raise TVMCError(f"--{name} must be at least 1, not {getattr(args, name)}")
        if args.timeout <= 0:
            raise TVMCError(f"--timeout must be positive, not {args.timeout}")
        if args.rpc_key and not args.rpc_tracker:
            raise TVMCError("--rpc-key needs --rpc-tracker HOST:PORT")
        options = parse_project_options(args.project_option)
        args.project_options = options
        if not args.rpc_tracker:
            if "board" not in options:
                raise TVMCError("say which board to tune on: --project-option board=NAME (e.g. board=mps2_an386)")
            try:
                board = boards.get_board(options["board"], args.platform)
            except Exception as err:
                raise TVMCError(str(err).strip("'\""))
            args.platform = args.platform or board.platform
            options["board"] = board.name

        from ..compiler.errors import CompileError
        from ..tune.records import Records, RecordsError
        from ..tune.runner import runner_for
        from ..tune.space import NotTunable
        from ..tune.tuner import Tuner

        from ..tune.records import read_records

        try:
            records = Records(pathlib.Path(args.tuning_records))
            prior = [entry for path in args.prior_records for entry in read_records(pathlib.Path(path))]
        except RecordsError as err:
            raise TVMCError(str(err))
        work = args.work_dir.resolve()
        with runner_for(args, work) as runner:
            tuner = Tuner(model, runner, records, args.platform or "", work, trials=args.trials,
                          early_stopping=args.early_stopping, number=args.number, repeat=args.repeat,
                          per_image=args.per_image, progress=not args.no_progress)
            if prior:
                tuner.learn_records(prior)
            try:
                summary = tuner.tune()
            except (NotTunable, CompileError) as err:
                raise TVMCError(" ".join(str(err).split()))
        ratio = f" ({summary.tuned / summary.untuned:.3f}x)" if summary.untuned else ""
        print(f"tuned {model.name} on {runner.board}: {summary.tasks} kernels, {summary.measurements} new "
              f"measurements ({summary.failures} failed), {summary.builds} builds, {summary.flashes} flashes, "
              f"{summary.wall_sec:.0f} s; kernels {summary.untuned:,.0f} -> {summary.tuned:,.0f} "
              f"{summary.unit} per inference{ratio}; records in {args.tuning_records}")
        sys.stdout.flush()
        return 0
