"""The hook ``runner_for`` imports for ``--rpc-tracker``: the board farm's runner (project_api/farm/)."""

from ..farm.runner import TrackerRunner, tracker_runner

__all__ = ["TrackerRunner", "tracker_runner"]
