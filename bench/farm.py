"""Board farm throughput: the same tuning job on 1, 2 and 4 emulated boards, trials per second.

The job: the first candidate images a KWS tuning run measures (``project_api.farm.jobs``: the
model's heaviest kernels, each task's untuned kernel first, then its other candidates), a fixed
number of trials. It is the same work at every board count, so the figures compare; the tuner
itself picks later images from earlier figures, which a fixed batch does not depend on.

For each board count: a fresh farm (TVM's RPC tracker on 127.0.0.1, N board servers each on its
own 127.0.0.1 port, each board QEMU mps2-an386 through the cortex_m template), then the job
through ``TrackerRunner.run_many`` timed from the first request to the last result. The images
are built once beforehand on this host (the tuner host's share, the same at every board count,
printed apart); each board starts with an empty image cache, so every board count pays its own
image transfers and flashes. Also: that every board count gives the same records and
bit-identical outputs.

    python bench/farm.py [--images 6] [--per-image 6] [--boards 1 2 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = REPO.parent / "shared" / "fixtures" / "models" / "mlperf_tiny_kws_ref_model_int8.tflite"
BOARD = "mps2_an386"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="candidate images in the job (default 6: every KWS kernel)")
    parser.add_argument("--per-image", type=int, default=6, help="candidates per image (default 6)")
    parser.add_argument("--boards", type=int, nargs="+", default=[1, 2, 4], help="board counts (default 1 2 4)")
    args = parser.parse_args()
    if not MODEL.is_file():
        print(f"bench/farm.py: {MODEL} is absent (the ../shared fixtures); nothing to measure", file=sys.stderr)
        return 1

    from project_api.farm.emulated import EmulatedFarm
    from project_api.farm.jobs import tuning_jobs
    from project_api.farm.runner import TrackerRunner

    work = Path(tempfile.mkdtemp(prefix="bench-farm-"))
    start = time.monotonic()
    jobs = tuning_jobs(MODEL, work, images=args.images, per_image=args.per_image)
    trials = sum(len(job.candidates) for job in jobs)
    lowering_sec = time.monotonic() - start
    print(f"job: {len(jobs)} KWS candidate images, {trials} trials (candidates), board {BOARD} on QEMU; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")

    rows, reference = [], None
    build_sec = None
    for count in args.boards:
        with EmulatedFarm(boards=count, board=BOARD) as farm:
            with TrackerRunner(farm.tracker, farm.key, work) as runner:
                if build_sec is None:  # the tuner host's builds, once, outside the timed runs
                    started = time.monotonic()
                    for job in jobs:
                        runner._built_project(job)
                    build_sec = time.monotonic() - started
                    print(f"tuner host: lowering {lowering_sec:.1f} s, {len(jobs)} image builds {build_sec:.1f} s "
                          f"(the same at every board count; not in the figures below)")
                load_before = os.getloadavg()[0]
                started = time.monotonic()
                results = runner.run_many(jobs)
                wall = time.monotonic() - started
                records = [[(r.signature, r.knobs, r.error) for r in job] for job in results]
                digests = [(m.signature, m.index, m.output_digest) for m in runner.history]
                per_board = {}
                for m in runner.history:
                    per_board[m.measured_on] = per_board.get(m.measured_on, 0) + 1
                failed = sum(1 for job in results for r in job if not r.ok)
        same = reference is None or (records, digests) == reference
        reference = reference or (records, digests)
        rows.append((count, wall, trials / wall, failed, same, sorted(per_board.values(), reverse=True),
                     runner.stats.flashes, load_before))

    base = rows[0][2]
    print()
    print(f"{'boards':>6} {'wall s':>8} {'trials/s':>9} {'speedup':>8} {'per board':>10} {'flashes':>8} "
          f"{'trials per board':>18} {'failed':>7} {'same records':>13} {'load':>5}")
    for count, wall, rate, failed, same, spread, flashes, load in rows:
        print(f"{count:>6} {wall:>8.1f} {rate:>9.3f} {rate / base:>7.2f}x {rate / count:>10.3f} {flashes:>8} "
              f"{'/'.join(map(str, spread)):>18} {failed:>7} {'yes' if same else 'NO':>13} {load:>5.1f}")
    # A many-core host: one core per QEMU (a polling guest keeps one busy) plus the client. The
    # measured efficiency per board at the largest count that fits in our cores carries over.
    cores = os.cpu_count() or 1
    fitting = [r for r in rows if r[0] <= cores]
    eff = (fitting[-1][2] / fitting[-1][0]) / base if fitting else 1.0
    print()
    print(f"what limits: each emulated board is a QEMU that keeps one host core busy while it runs or polls, "
          f"and the board servers, Project API servers and this client share the same {cores} cores; at "
          f"{max(args.boards)} boards on {cores} cores the boards queue for CPU. Per-board efficiency at "
          f"{fitting[-1][0] if fitting else 1} boards: {eff:.2f}.")
    images = len(jobs)
    for count in (4, 8, 16):
        note = "" if count <= images else f" (needs a job of >= {count} images; this one has {images})"
        print(f"projection, a host with >= {count + 1} cores and {count} boards: ~{base * count * eff:.2f} trials/s "
              f"({count * eff:.1f}x one board){note}")
    per_image = build_sec / images
    print(f"the tuner host's builds: {per_image:.1f} s per image here, {trials / build_sec:.2f} trials/s at most "
          f"while they run one after another on this host (measured above: images built beforehand); past that, "
          "builds are the limit: build on the board hosts (TrackerRunner(build='board')) or a bigger tuner host")
    return 0 if all(row[4] and not row[3] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
