"""
The state directory on disk (--state-dir): the file that core/owned.py's records live in,
read once at start and written atomically in the reactor's thread pool afterwards.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from mep_agent.core.owned import FILE_NAME, MAX_BYTES, Snapshot, decode


@frozen
class Found:
    """What start-up found in the state directory."""

    snapshot: Snapshot | None  # the earlier lives' records (None: none usable)
    writable: bool
    problem: str | None  # why nothing outlives this life, or why the file was ignored


def write_atomically(directory: str, data: bytes) -> None:
    """Replace the state file with C{data}: a temporary file, fsync, rename, fsync."""
    fd, temporary = tempfile.mkstemp(prefix=".state-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, os.path.join(directory, FILE_NAME))
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)


def look(directory: str, app_instance_id: str) -> Found:
    """Read the earlier lives' records and check that the directory can be written."""
    snapshot, problem = None, None
    path = os.path.join(directory, FILE_NAME)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        snapshot = decode(raw, app_instance_id)
    except FileNotFoundError:
        pass  # the first life in this pod
    except (OSError, ValueError) as e:
        problem = f"{path} ignored: {getattr(e, 'strerror', None) or e}"
    try:
        probe = tempfile.NamedTemporaryFile(prefix=".probe-", dir=directory)
        probe.close()
    except OSError as e:
        return Found(snapshot, False, f"cannot write {directory}: {e.strerror or e}")
    return Found(snapshot, True, problem)


class StateFile:
    """Writes the state file off the reactor thread (core/owned.py's StateStore)."""

    def __init__(self, reactor: Any, directory: str) -> None:
        self._reactor = reactor
        self._directory = directory

    def save(self, data: bytes) -> Deferred[None]:
        """Write C{data} atomically in the thread pool."""
        pool = self._reactor.getThreadPool()
        return deferToThreadPool(self._reactor, pool, write_atomically, self._directory, data)
