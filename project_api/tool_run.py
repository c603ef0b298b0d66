"""Running an external tool (make, west, arduino-cli, a compiler ...) the one way every template,
the tuner and the reports do it.

``run_tool`` writes the tool's whole output to a log file, prints one compact progress line with
the elapsed time (the whole output as well with ``verbose`` or MTP_VERBOSE=1), and on failure
raises ``ToolError`` with one line: why it failed (the lines of its output that say so) and where
the full log is. ``require_tool`` finds an executable or says what to install.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import time
from typing import Callable, Mapping, Optional, Sequence, TextIO

# Set to 1 (or true/yes) to see every tool's full output, whatever the verbose option says.
VERBOSE_ENV = "MTP_VERBOSE"


class ToolError(Exception):
    """A tool is missing or failed; the message is one line saying why and what to do."""


def verbose_from_env(environ: Optional[Mapping[str, str]] = None) -> bool:
    return (environ if environ is not None else os.environ).get(VERBOSE_ENV, "").lower() in ("1", "true", "yes", "on")


def require_tool(command: str, install_hint: str) -> str:
    """The full path of ``command`` (searched on $PATH), or ToolError "`command` not found: install_hint"."""
    found = shutil.which(command)
    if found is None:
        raise ToolError(f"{command} not found: {install_hint}")
    return found


def failure_line(what: str, returncode: int, output: str) -> str:
    """The one-line error for a tool that failed: the first lines of its output that mention an
    error (else its last lines), which is where compilers and make say why."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reasons = [line for line in lines if "error" in line.lower()][:3] or lines[-3:]
    return f"{what} failed (exit status {returncode}): " + " | ".join(reasons)


def run_tool(argv: Sequence[str], what: str, log_path: pathlib.Path, *, cwd: Optional[pathlib.Path] = None,
             env: Optional[Mapping[str, str]] = None, verbose: bool = False,
             explain: Optional[Callable[[str, int, str], str]] = None, stream: Optional[TextIO] = None) -> str:
    """Run ``argv`` to completion and return its output (stdout and stderr, interleaved).

    The output goes to ``log_path`` (overwritten; the command line first). ``stream`` (default
    stderr) gets ``<what>: ok in 3.2 s (log: ...)``, or every line as it comes when verbose; on a
    terminal one line shows the elapsed time and the tool's latest line while it runs.
    A non-zero exit raises ToolError with ``explain(what, returncode, output)`` (default
    ``failure_line``) and the log's path."""
    stream = stream or sys.stderr
    verbose = verbose or verbose_from_env()
    live = not verbose and stream.isatty()  # rewrite one status line in place
    log_path = pathlib.Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    lines = []
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + shlex.join(map(str, argv)) + "\n")
        try:
            proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env=None if env is None else dict(env),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace")
        except OSError as err:
            raise ToolError(f"cannot run {argv[0]}: {err}") from err
        with proc:
            for line in proc.stdout:
                lines.append(line)
                log.write(line)
                if verbose:
                    stream.write(line)
                elif live:
                    status = f"{what}: {time.monotonic() - start:.0f} s  {line.strip()}"
                    stream.write("\r\033[K" + status[:shutil.get_terminal_size().columns - 1])
                    stream.flush()
        returncode = proc.returncode
    if live:
        stream.write("\r\033[K")
    output = "".join(lines)
    elapsed = time.monotonic() - start
    if returncode != 0:
        message = (explain or failure_line)(what, returncode, output)
        raise ToolError(f"{message} (full output: {log_path})")
    stream.write(f"{what}: ok in {elapsed:.1f} s (log: {log_path})\n")
    stream.flush()
    return output
