"""An array made of several on-disk arrays: the crops of a sharded dataset, read on demand.

:class:`ShardedArray` stands where a ``CellDataset`` holds an in-memory ``images`` or
``masks`` array. It concatenates, along axis 0, arrays that are usually ``.npy`` files
(:class:`NpyRows`, one per shard of a ``protrep-cells`` version 2 folder), and reads only
the rows asked for: ``a[i]``, ``a[start:stop]`` and ``a[index]`` return ordinary NumPy
arrays of those rows, so code written for in-memory arrays (``ds.images[start:start +
256]``) streams from disk unchanged, and memory does not grow with the number of cells.
:meth:`ShardedArray.take` selects rows lazily (what ``CellDataset.subset`` does with a
sharded dataset).

Rows are read with ``pread`` rather than through a memory map: the pages of a memory map
that a pass over a million crops touches count in the process's resident memory (16 GB of
them), while pages read with ``pread`` stay in the operating system's cache, shared and
reclaimable, and the process holds only the rows it asked for.
"""

import os
from collections import OrderedDict

import numpy as np

__all__ = ["ShardedArray", "NpyRows", "is_lazy", "blocks"]


_FILES = OrderedDict()  # path -> (pid, fd): files kept open by this process, least recently used first
_MAX_OPEN = 256


def _fd(path):
    """A read-only descriptor of ``path`` for this process (at most ``_MAX_OPEN`` stay open)."""
    pid = os.getpid()
    entry = _FILES.get(path)
    if entry is not None and entry[0] == pid:
        _FILES.move_to_end(path)
        return entry[1]
    if entry is not None:  # inherited through fork: leave the parent's descriptor alone, open our own
        del _FILES[path]
    while len(_FILES) >= _MAX_OPEN:
        old_pid, old_fd = _FILES.popitem(last=False)[1]
        if old_pid == pid:
            os.close(old_fd)
    fd = _FILES[path] = (pid, os.open(path, os.O_RDONLY))
    return fd[1]


class NpyRows:
    """Rows of a ``.npy`` file read on demand with ``pread``.

    A process keeps up to 256 such files open (the least recently read are closed), so a
    dataset of thousands of shards stays within the limit of open files.

    Parameters
    ----------
    path : str or Path
        A C-ordered ``.npy`` file (as ``np.save`` writes).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.npy"
    >>> np.save(f, np.arange(12).reshape(4, 3))
    >>> r = NpyRows(f)
    >>> r.shape, r[1:3].tolist(), r[np.array([3, 0])].tolist()
    ((4, 3), [[3, 4, 5], [6, 7, 8]], [[9, 10, 11], [0, 1, 2]])
    """

    def __init__(self, path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{self.path}: needs a C-ordered numeric array with at least one axis")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * self.dtype.itemsize
        size = os.path.getsize(self.path)
        if size < self.offset + self.row_bytes * self.shape[0]:
            raise ValueError(f"{self.path}: truncated ({size} bytes for {self.shape} {self.dtype})")

    nbytes = property(lambda self: self.row_bytes * self.shape[0])

    def __len__(self):
        return self.shape[0]

    def _read(self, fd, out, first):
        view = memoryview(out.reshape(-1).view(np.uint8))
        done = 0
        while done < len(view):  # pread may return less than asked for
            n = os.preadv(fd, [view[done:]], self.offset + first * self.row_bytes + done)
            if n == 0:
                raise OSError(f"{self.path}: unexpected end of file")
            done += n

    def __getitem__(self, key):
        """Rows ``key``: a slice of step 1 or an array of row numbers."""
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            rows = [(start, max(stop - start, 0), 0)]
            n = max(stop - start, 0)
        else:
            key = np.asarray(key, dtype=np.int64)
            n = len(key)
            # runs of consecutive rows, each one read
            breaks = np.flatnonzero(np.diff(key) != 1) + 1
            starts = np.concatenate([[0], breaks]).astype(np.int64)
            lengths = np.diff(np.concatenate([starts, [n]]))
            rows = [(int(key[s]), int(m), int(s)) for s, m in zip(starts, lengths)] if n else []
        out = np.empty((n, *self.shape[1:]), self.dtype)
        if n:
            fd = _fd(self.path)
            for first, m, at in rows:
                self._read(fd, out[at:at + m], first)
        return out


def is_lazy(array):
    """Whether ``array`` is read on demand (a :class:`ShardedArray`), not held in memory."""
    return isinstance(array, ShardedArray)


BLOCK_ROWS = 4096  # rows per read of :func:`blocks` (16 MB of 64 px uint16 GFP/RFP crops)


def blocks(array, size=None):
    """Yield ``(start, rows)``: a lazy array in blocks of ``size`` rows (default :data:`BLOCK_ROWS`) read one at a
    time, any other array whole.

    For checks and reductions that must not read all of a sharded dataset at once
    (``all(np.isfinite(b).all() for _, b in blocks(images))``).
    """
    if is_lazy(array):
        yield from array.chunks(size or BLOCK_ROWS)
    else:
        yield 0, np.asarray(array)


class ShardedArray:
    """Rows of several arrays with the same trailing shape and dtype, concatenated lazily.

    Parameters
    ----------
    parts : sequence of ndarray
        The pieces in order (typically ``np.load(..., mmap_mode="r")``); ``len(parts[k])``
        rows each, all with the same ``shape[1:]`` and ``dtype``.
    rows : ndarray of int, optional
        Positions in the concatenation that this array holds, in order (a lazy selection,
        from :meth:`take`); all rows when omitted.

    Examples
    --------
    >>> a = ShardedArray([np.arange(6).reshape(3, 2), np.arange(6, 10).reshape(2, 2)])
    >>> a.shape, a[2:4].tolist()
    ((5, 2), [[4, 5], [6, 7]])
    >>> a.take([4, 0])[1].tolist()
    [0, 1]
    """

    def __init__(self, parts, rows=None):
        parts = list(parts)
        if not parts:
            raise ValueError("a ShardedArray needs at least one part")
        tail, dtype = parts[0].shape[1:], parts[0].dtype
        for k, p in enumerate(parts):
            if p.shape[1:] != tail or p.dtype != dtype:
                raise ValueError(f"part {k} has shape {p.shape} and dtype {p.dtype}; part 0 has rows of "
                                 f"{tail} {dtype}")
        self.parts = parts
        self._offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        n_total = int(self._offsets[-1])
        if self.rows is not None and len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= n_total):
            raise IndexError(f"rows out of range for {n_total} rows")
        n = n_total if self.rows is None else len(self.rows)
        self.shape = (n, *tail)
        self.dtype = dtype

    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: int(np.prod(self.shape)))
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"ShardedArray(shape={self.shape}, dtype={self.dtype}, parts={len(self.parts)})"

    def _positions(self, key):
        """Global row positions (int64 array) selected by an index ``key`` along axis 0."""
        n = len(self)
        if isinstance(key, slice):
            pos = np.arange(*key.indices(n), dtype=np.int64)
        else:
            key = np.asarray(key)
            if key.dtype == bool:
                if key.shape != (n,):
                    raise IndexError(f"boolean index of shape {key.shape} for {n} rows")
                pos = np.flatnonzero(key)
            elif key.dtype.kind in "iu":
                pos = key.astype(np.int64).ravel()
                if len(pos) and (pos.min() < -n or pos.max() >= n):
                    raise IndexError(f"index out of range for {n} rows")
                pos = np.where(pos < 0, pos + n, pos)
            else:
                raise IndexError(f"cannot index rows with {key.dtype} values")
        return pos if self.rows is None else self.rows[pos]

    def _gather(self, pos):
        out = np.empty((len(pos), *self.shape[1:]), self.dtype)
        if len(pos) == 0:
            return out
        order = np.argsort(pos, kind="stable")  # ascending reads, grouped by part
        pos = pos[order]
        part = np.searchsorted(self._offsets, pos, side="right") - 1
        bounds = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist(), len(pos)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            k = part[a]
            local = pos[a:b] - self._offsets[k]
            if local[-1] - local[0] == b - a - 1 and (b - a == 1 or np.diff(local).min() == 1):  # one run: one read
                out[order[a:b]] = self.parts[k][local[0]:local[-1] + 1]
            else:
                out[order[a:b]] = self.parts[k][local]
        return out

    def __getitem__(self, key):
        rest = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (len(self) if key < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"index {key} out of range for {len(self)} rows")
            out = self._gather(self._positions(np.array([i])))[0]
            return out[rest] if rest else out
        out = self._gather(self._positions(key))
        return out[(slice(None), *rest)] if rest else out

    def take(self, index):
        """The rows ``index`` (integer positions or a boolean mask) as a new lazy array."""
        return ShardedArray(self.parts, rows=self._positions(index))

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    def astype(self, dtype, copy=True):
        """All rows read into memory as ``dtype``."""
        return self[:].astype(dtype, copy=False)

    def chunks(self, size):
        """Yield ``(start, rows)`` for consecutive blocks of ``size`` rows, read one at a time."""
        for start in range(0, len(self), size):
            yield start, self[start:start + size]
