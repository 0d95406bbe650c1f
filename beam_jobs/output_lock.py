"""One writer per output: an advisory lock (``flock``) on ``<output>.lock`` beside the output file or folder.

The operating system releases the lock when its process ends, however it ends (``kill -9`` included), so a lock is
never stale: a second run while the first is alive is refused, naming the first; a run after a crash takes the lock
and may then treat what the crashed run left as its own. The lock file is removed when the holder lets go; one
left by a killed process holds no lock. Local paths only: object stores (``gs://``) have no such locks.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

LOCK_SUFFIX = ".lock"


class OutputLocked(OSError):
    """Another live process is writing the output."""


class OutputLock:
    """Held from construction until :meth:`release` (or the process's end)."""

    def __init__(self, output: str, command: str):
        self.output = output.rstrip("/")
        self.path = self.output + LOCK_SUFFIX
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(descriptor)
                os.close(descriptor)
                raise OutputLocked(f"{self.output} is being written by another run ({holder}); wait for it to end "
                                   "or choose another output") from None
            if _same_file(descriptor, self.path):
                break
            os.close(descriptor)  # its holder removed that lock file as we opened it: lock the one there now
        os.ftruncate(descriptor, 0)
        os.write(descriptor, json.dumps({"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                                         "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is None:
            return
        os.unlink(self.path)  # while held: a waiting opener then sees another file and retries
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> "OutputLock":
        return self

    def __exit__(self, *_) -> None:
        self.release()


def _same_file(descriptor: int, path: str) -> bool:
    try:
        return os.fstat(descriptor).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(descriptor: int) -> str:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        return f"{holder['command']}, pid {holder['pid']} on {holder['host']}, since {holder['started']}"
    except (ValueError, KeyError, OSError):
        return "a process that has not yet said which"
