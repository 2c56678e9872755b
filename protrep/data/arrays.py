"""An array made of several on-disk arrays: the crops of a sharded dataset, read on demand.

:class:`ShardedArray` stands where a ``CellDataset`` holds an in-memory ``images`` or
``masks`` array. It concatenates, along axis 0, arrays that are usually memory-mapped
``.npy`` files (one per shard of a ``protrep-cells`` version 2 folder), and reads only the
rows asked for: ``a[i]``, ``a[start:stop]`` and ``a[index]`` return ordinary NumPy arrays
of those rows, so code written for in-memory arrays (``ds.images[start:start + 256]``)
streams from disk unchanged, and memory does not grow with the number of cells.
:meth:`ShardedArray.take` selects rows lazily (what ``CellDataset.subset`` does with a
sharded dataset).
"""

import numpy as np

__all__ = ["ShardedArray", "is_lazy"]


def is_lazy(array):
    """Whether ``array`` is read on demand (a :class:`ShardedArray`), not held in memory."""
    return isinstance(array, ShardedArray)


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
        part = np.searchsorted(self._offsets, pos, side="right") - 1
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            local = pos[sel] - self._offsets[k]
            if len(local) > 1 and np.all(np.diff(local) == 1):  # a run of consecutive rows: one slice
                out[sel] = self.parts[k][local[0]:local[-1] + 1]
            else:
                order = np.argsort(local, kind="stable")  # ascending reads are kinder to the disk
                out[sel[order]] = self.parts[k][local[order]]
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
