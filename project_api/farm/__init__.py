"""The board farm (issue 13): boards on many hosts behind TVM's RPC tracker, measured in parallel.

Engine: TVM's own RPC tracker (``python -m tvm.exec.rpc_tracker``) and RPC server, as legacy
microTVM and AutoTVM used them (``--rpc-tracker HOST:PORT --rpc-key KEY``); docs/farm.md says why
not labgrid. Layers, each in its module:

address.py    HOST:PORT parsing with one-line errors
processes.py  the tracker and board server child processes (never leaked), /proc process trees
board.py      the board server: one board registered under a key; flash-and-measure functions
              served over TVM RPC (``python -m project_api.farm serve``)
tracker.py    the client's view of the tracker: is it there, which boards are free under a key
pool.py       the client's boards: sessions to every free board, work spread over them, a lost
              board's work retried on another and the board marked lost
runner.py     ``TrackerRunner``: the tuner's ``Runner`` (project_api.tune.runner) on the farm
emulated.py   a farm on this machine: a tracker and N emulated boards, each on its own 127.0.0.1 port
"""


class FarmError(RuntimeError):
    """A farm problem the user can fix (unreachable tracker, unknown key, no board left): one line."""
