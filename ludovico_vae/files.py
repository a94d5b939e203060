"""Writing files so that a crash never leaves half of one."""
from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

TEMPORARY_PREFIX = ".tmp-"  # what a write interrupted by a crash leaves behind; safe to delete


@contextmanager
def atomic_write(path):
    """Open a temporary file beside `path`; it becomes `path` only if the block succeeds.

    The temporary file lives in the destination folder so the rename never crosses file systems;
    it is flushed to disk before the rename, so a crash leaves the old file or the new one, never
    a partial one; on any exception it is removed.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMPORARY_PREFIX}{path.name}-")
    except OSError as e:  # whatever stops the file being created is about `path`
        raise (type(e)(e.errno, e.strerror, str(path)) if e.errno else e) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes files private; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(e, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every platform can sync a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def _naming(error: OSError, path: Path) -> OSError:
    """A storage error (a full disk, a read-only folder) told about `path`, not its temporary file.

    Other errors raised in the block, such as a lost network connection, pass unchanged.
    """
    if error.errno not in STORAGE_ERRORS or (error.filename and TEMPORARY_PREFIX not in str(error.filename)):
        return error
    return type(error)(error.errno, os.strerror(error.errno), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path) -> str:
    """SHA-256 of a file's content, read in blocks so large checkpoints do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_head(path: Path, size: int, missing: str, kind: str) -> bytes:
    """The first `size` bytes of `path`, or ValueError(reason): `missing` when there is no such
    path, or why it is not `kind` (a folder) or cannot be read. Readers check a file's magic
    number this way before parsing it."""
    if not path.exists():
        raise ValueError(missing)
    if path.is_dir():
        raise ValueError(f"is a directory, not {kind}")
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror or e})") from None
