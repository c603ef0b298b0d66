"""Files a command writes: checked before the work that produces them, written whole or not at all.

A compile takes seconds and a device run can take minutes, so a path that cannot be written is
found out first (``check_output_path``), not after the work is done; ``write_atomically`` never
leaves a half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import Iterator

from . import TVMCError


def check_output_path(path: pathlib.Path, option: str, create_parents: bool = False) -> pathlib.Path:
    """``path`` if a file can be written there, else a TVMCError naming the problem.

    Missing parent directories are an error unless ``create_parents`` (then they are made). The
    check creates and removes a scratch file beside ``path``: only that proves the directory takes
    new files (/proc and read-only mounts pass every permission test and still refuse)."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise TVMCError(f"{option} {path} is a directory; give the path of the file to write")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise TVMCError(f"cannot write {option} {path}: {existing} is a file, not a directory")
    if existing != parent:
        if not create_parents:
            raise TVMCError(f"cannot write {option} {path}: directory {parent} does not exist")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TVMCError(f"cannot write {option} {path}: cannot create directory {parent} "
                            f"({err.strerror or err})") from err
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as err:
        raise TVMCError(f"cannot write {option} {path}: directory {parent} does not take new files "
                        f"({err.strerror or err})") from err
    return path


@contextlib.contextmanager
def write_atomically(path: pathlib.Path, option: str) -> Iterator[pathlib.Path]:
    """Yield a scratch path beside ``path``; when the body succeeds it becomes ``path``, when it
    fails it is removed (so an old file of that name survives a failed write)."""
    path = pathlib.Path(path)
    fd, scratch_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    scratch = pathlib.Path(scratch_name)
    umask = os.umask(0o22)
    os.umask(umask)
    os.chmod(scratch, 0o666 & ~umask)  # mkstemp makes it 0600; the file gets a new file's mode
    try:
        yield scratch
        os.replace(scratch, path)
    except OSError as err:
        raise TVMCError(f"cannot write {option} {path}: {err.strerror or err}") from err
    finally:
        scratch.unlink(missing_ok=True)
