"""Helpers shared by the frozen configuration dataclasses (SimConfig, ModelConfig, TrainConfig)."""

import dataclasses
import hashlib
from pathlib import Path

__all__ = ["from_dict", "source_hash"]


def from_dict(cls, d):
    """Build the dataclass ``cls`` from a dict; unknown keys raise ``ValueError`` naming them.

    Configs are saved in every dataset, checkpoint and results file; a key this version
    does not know means the file comes from another version, and guessing would be wrong.
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}")
    return cls(**d)


def source_hash(*modules):
    """Short hash of the source files of ``modules`` (a package counts with all its files).

    Stored beside cached results (datasets, training runs): a cache is reused only when the
    code that made it is unchanged.
    """
    h = hashlib.sha256()
    for module in modules:
        path = Path(module.__file__)
        files = sorted(path.parent.glob("*.py")) if path.name == "__init__.py" else [path]
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]
