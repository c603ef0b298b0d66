"""A fixed batch of tuning measurement jobs: the first candidate images the tuner would measure
for a model (each task's untuned kernel first, then its other candidates in the space's order).

Tests and bench/farm.py use it to run *the same* work on 1, 2 or 4 boards: the tuner's own
choice of what to measure next depends on what it has measured, a fixed batch does not.
"""

from __future__ import annotations

import pathlib
from typing import List

from ..tune.runner import MeasureJob


def tuning_jobs(model_path: pathlib.Path, work_dir: pathlib.Path, images: int, per_image: int = 4,
                number: int = 1, repeat: int = 1, lightest: bool = False) -> List[MeasureJob]:
    """``images`` candidate images of ``model_path``'s heaviest kernels (``lightest``: its lightest
    ones with at least ``per_image`` candidates: small images, quick builds), ``per_image``
    candidates each."""
    from ..compiler.mlf import export_mlf
    from ..tune import space
    from ..tune.image import CHECKSUM_NAME, candidate_image

    tasks = space.model_tasks(pathlib.Path(model_path))
    tasks.sort(key=lambda t: -t.layers * space._macs(t.kind, t.params))
    if lightest:
        tasks = [t for t in reversed(tasks) if len(t.candidates) >= per_image]
    jobs = []
    for task in tasks[:images]:
        knob_sets = [task.default] + [k for k in task.candidates if k != task.default][:per_image - 1]
        lowered, content = candidate_image(pathlib.Path(model_path), task, knob_sets)
        mlf = export_mlf(lowered, pathlib.Path(work_dir) / "mlf" / f"{content}.tar",
                         export_datetime="1970-01-01 00:00:00")
        # As the tuner makes them (Tuner._measure): the image makes its layer's inputs on the
        # device and each candidate is checked by the checksum of its output.
        jobs.append(MeasureJob(task.signature, knob_sets, mlf, content, {}, number, repeat,
                               check_outputs=[CHECKSUM_NAME]))
    return jobs
