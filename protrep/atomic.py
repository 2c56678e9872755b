"""Write files and folders atomically: a killed run leaves the old state or nothing.

Everything is first written under a temporary name in the destination's folder and then
renamed into place, which is atomic on POSIX file systems.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_file", "atomic_dir", "read_json", "write_json"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path, mode="wb"):
    """Open a temporary file beside ``path``; rename it to ``path`` on success.

    Examples
    --------
    >>> with atomic_file("out.json", "w") as f:  # doctest: +SKIP
    ...     f.write("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes private files; give the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path, *, overwrite=False):
    """Yield a temporary folder beside ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final folder.
    overwrite : bool, default False
        Replace an existing folder at ``path``. Without it an existing folder raises
        ``FileExistsError`` before anything is written.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path, obj):
    """Write ``obj`` as indented JSON, atomically (parent folders are created)."""
    with atomic_file(path, "w") as f:
        f.write(json.dumps(obj, indent=2) + "\n")
    return Path(path)


def read_json(path, *, missing):
    """Read a JSON file; a missing or damaged file raises :class:`~protrep.errors.DataError`.

    ``missing`` is the message for a file that does not exist (it names what is expected there).
    """
    from .errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(path.parent, missing)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"corrupt JSON ({e})") from None
