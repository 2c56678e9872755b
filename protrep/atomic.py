"""Write files and folders atomically: a killed run leaves the old state or nothing.

Everything is first written under a temporary name in the destination's folder and then
renamed into place, which is atomic on POSIX file systems. A temporary is named after
its destination, the machine and the writing process, ``.<name>.<host>.<pid>.<tag>.tmp``,
so that the next write of the same destination finds the temporaries of writers that
were killed (:func:`remove_stale_temporaries`) and removes them; those of a writer still
running, or of another machine (a shared file system), are left alone.
"""

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

__all__ = ["atomic_file", "atomic_dir", "read_json", "write_json", "check_destination", "remove_stale_temporaries",
           "remove_dead_writers", "writer_alive", "host_name"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def host_name():
    """This machine's short host name, as temporaries record it."""
    return socket.gethostname().split(".")[0]


def writer_alive(host, pid):
    """Whether the writer ``pid`` of ``host`` may still run: a process of another machine is not
    ours to judge (True); one of this machine is alive unless it is gone."""
    if host != host_name():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prefix(path):
    """What every temporary of ``path`` written by this process starts with."""
    return f".{path.name}.{host_name()}.{os.getpid()}."


def remove_stale_temporaries(path):
    """Remove the temporaries of ``path`` (files or folders beside it) left by killed writers of this machine.

    Parameters
    ----------
    path : str or Path
        The destination whose temporaries (``.<name>.<host>.<pid>.<tag>.tmp``) are looked for
        in its folder.

    Returns
    -------
    list of Path
        The temporaries removed.
    """
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
    return remove_dead_writers(path.parent, pattern)


def remove_dead_writers(folder, pattern):
    """Remove the entries of ``folder`` whose name matches ``pattern`` and whose writer is dead.

    ``pattern`` (a compiled regular expression) names the writer in its groups ``host``
    and ``pid`` (:func:`writer_alive` judges them). Returns the paths removed; none when
    ``folder`` does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    with os.scandir(folder) as entries:
        for entry in entries:
            m = pattern.match(entry.name)
            if m and not writer_alive(m["host"], int(m["pid"])):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
    return removed


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def check_destination(path, *, overwrite=False, marker=None):
    """Check, before any work, that a folder can be written at ``path``; raise saying what to do.

    Parameters
    ----------
    path : str or Path
        The folder to be written.
    overwrite : bool, default False
        Whether an existing folder may be replaced.
    marker : str, optional
        The file that shows a folder was written by protrep (``dataset.json``): with
        ``overwrite``, an existing folder is replaced only if it holds it or is empty.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False, or it is a file.
    DataError
        ``path`` holds other files than protrep's, or it cannot be created (a file where a
        folder above it should be, or a folder without write permission).
    """
    from .errors import DataError

    path = Path(path)
    if path.is_file() or (path.exists() and not path.is_dir()):
        raise FileExistsError(f"{path}: is a file, not a folder; choose another destination or remove the file")
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path}: already exists; pass overwrite=True to replace it")
        if marker is not None and not (path / marker).is_file() and any(path.iterdir()):
            shown = sorted(p.name for p in path.iterdir())
            raise DataError(path, f"holds {len(shown)} {'entry' if len(shown) == 1 else 'entries'} "
                                  f"({', '.join(shown[:5])}{', ...' if len(shown) > 5 else ''})"
                                  f" but no {marker}: protrep did not write it, so overwrite=True does not replace "
                                  "it; choose another destination or empty the folder yourself")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(parent, f"is a file, so the folder {path} cannot be made in it; choose another destination")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(parent, f"is not writable, so {path} cannot be written; choose another destination")


@contextlib.contextmanager
def atomic_file(path, mode="wb"):
    """Open a temporary file beside ``path``; rename it to ``path`` on success.

    Temporaries that killed writers left for ``path`` are removed first.

    Examples
    --------
    >>> with atomic_file("out.json", "w") as f:  # doctest: +SKIP
    ...     f.write("{}")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent)
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
def atomic_dir(path, *, overwrite=False, marker=None):
    """Yield a temporary folder beside ``path``; rename it to ``path`` on success.

    Parameters
    ----------
    path : str or Path
        Final folder.
    overwrite : bool, default False
        Replace an existing folder at ``path``. Without it an existing folder raises
        ``FileExistsError`` before anything is written.
    marker : str, optional
        With ``overwrite``, replace only a folder that holds this file (or is empty): see
        :func:`check_destination`.

    Temporaries that killed writers left for ``path`` are removed first.
    """
    path = Path(path)
    check_destination(path, overwrite=overwrite, marker=marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        if path.exists():
            old = path.with_name(f"{_prefix(path)}old.tmp")
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
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
