"""A disk that fails on demand: an SQLite VFS over the real one, for fault-injection tests.

While `FaultyDisk.failing(error)` is active, every write, sync and truncate
of a store file raises `error` (`apsw.FullError` is a full disk,
`apsw.IOError` an I/O error, `apsw.ReadOnlyError` a file turned read-only),
and SQLite sees exactly what a real disk would report. `corrupt_reads`
makes reads of the main database file return damaged pages instead. Made the
process's default VFS for the test that uses it, so the server's own code
opens its connections through it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import apsw


class FaultyDisk(apsw.VFS):
    NAME = "faulty-disk"

    def __init__(self) -> None:
        self.base = apsw.vfs_names()[0]
        super().__init__(self.NAME, self.base, makedefault=True)
        self.failure: type[apsw.Error] | None = None
        self.damaged = False
        self.refused = 0  # how many writes, syncs and truncates failed

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        return _File(self, name, flags)

    @contextmanager
    def failing(self, error: type[apsw.Error]) -> Iterator[None]:
        """Fail every write, sync and truncate with `error` for the block."""
        self.failure = error
        try:
            yield
        finally:
            self.failure = None

    @contextmanager
    def corrupt_reads(self) -> Iterator[None]:
        """Reads of the database file (not the WAL) return pages of garbage for the block."""
        self.damaged = True
        try:
            yield
        finally:
            self.damaged = False

    def check(self) -> None:
        if self.failure is not None:
            self.refused += 1
            raise self.failure()


class _File(apsw.VFSFile):
    def __init__(self, disk: FaultyDisk, name: str | apsw.URIFilename | None, flags: list[int]) -> None:
        super().__init__(disk.base, name, flags)
        self.disk = disk
        self.main_db = bool(flags[0] & apsw.SQLITE_OPEN_MAIN_DB)

    def xRead(self, amount: int, offset: int) -> bytes:
        data = super().xRead(amount, offset)
        if self.disk.damaged and self.main_db and offset > 0:
            return bytes([0x5A]) * len(data)
        return data

    def xWrite(self, data: bytes, offset: int) -> None:
        self.disk.check()
        super().xWrite(data, offset)

    def xSync(self, flags: int) -> None:
        self.disk.check()
        super().xSync(flags)

    def xTruncate(self, newsize: int) -> None:
        self.disk.check()
        super().xTruncate(newsize)
