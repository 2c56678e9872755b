"""The one configuration mechanism: frozen dataclasses with a strict, recursive ``from_dict``.

Every config of the package (``SimConfig``, ``FieldParams``, ``HPASimConfig``,
``HumanFieldParams``, ``ModelConfig``, ``TrainConfig``, the book's ``BookProfile``) is a
frozen dataclass deriving from :class:`Config`:

- ``to_dict()`` gives plain JSON types (nested configs as dicts, tuples as lists); it is
  stored in every dataset, checkpoint and results file, so a run can be rebuilt from its
  directory alone;
- ``from_dict(d)`` rebuilds it, recursively: a field annotated with a config type takes a
  dict (or the config itself); an unknown key at any depth raises ``ValueError`` naming its
  path, because a key this version does not know means the file comes from another version,
  and guessing would be wrong;
- ``__post_init__`` validates every field with the checks below and raises ``ValueError``
  naming the field and what to give instead.

:func:`source_hash` fingerprints the code that made a cached result (datasets, runs).
"""

import dataclasses
import hashlib
import math
import typing
from pathlib import Path

__all__ = ["Config", "from_dict", "source_hash", "check_int", "check_number", "check_share", "check_choice",
           "check_split"]


class Config:
    """Mixin of the package's frozen dataclass configs: ``to_dict``, strict ``from_dict``, ``replace``."""

    def to_dict(self):
        """The fields as plain JSON types (nested configs as dicts, tuples as lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict`'s output; unknown keys raise ``ValueError`` at every depth."""
        return from_dict(cls, d)

    def replace(self, **changes):
        """A copy with ``changes`` (validated like any new config)."""
        return dataclasses.replace(self, **changes)

    def override(self, **changes):
        """:meth:`replace` with the changes that are not None: how notebook parameters set to None keep defaults."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _config_type(annotation):
    """The dataclass type a field holds (``X`` or ``X | None``), else None."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, type(int | None)) \
        else (annotation,)
    found = [t for t in options if isinstance(t, type) and dataclasses.is_dataclass(t)]
    return found[0] if found else None


def from_dict(cls, d, *, path=None):
    """Build the dataclass ``cls`` from a dict, recursively; unknown keys raise ``ValueError`` naming them.

    A field whose annotation is a dataclass (or that dataclass or None) accepts a dict,
    which is built the same way; its unknown keys are reported with their path
    (``imaging.sizee``).
    """
    where = path or cls.__name__
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a dict of {cls.__name__} fields, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown {where} keys {unknown}; known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in d.items():
        nested = _config_type(hints.get(name))
        if nested is not None and isinstance(value, dict):
            value = from_dict(nested, value, path=f"{where}.{name}" if path else name)
        values[name] = value
    return cls(**values)


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


# --------------------------------------------------------------------------- field checks
def check_int(config, *names, low=0, none=False):
    """Each field must be an integer >= ``low`` (or None where ``none``)."""
    for name in names:
        value = getattr(config, name)
        if none and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}{' or None' if none else ''}, got {value!r}")


def check_number(config, *names, low=None, high=None, strict_low=False, none=False):
    """Each field must be a finite number within ``[low, high]`` (``(low, ...`` where ``strict_low``)."""
    for name in names:
        value = getattr(config, name)
        if none and value is None:
            continue
        ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        ok = ok and (low is None or (value > low if strict_low else value >= low)) and (high is None or value <= high)
        if not ok:
            bounds = f"{'>' if strict_low else '>='} {low}" if low is not None else ""
            bounds += (" and " if bounds and high is not None else "") + (f"<= {high}" if high is not None else "")
            raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}"
                             f"{' or None' if none else ''}, got {value!r}")


def check_share(config, *names):
    """Each field must be a share between 0 and 1."""
    check_number(config, *names, low=0.0, high=1.0)


def check_split(config, name="split_fractions"):
    """The field must be three shares (train, val, test) summing to 1; it is stored as a tuple."""
    fractions = tuple(getattr(config, name))
    if len(fractions) != 3 or any(not 0 <= f <= 1 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"{name} must be three shares (train, val, test) summing to 1, got {fractions}")
    object.__setattr__(config, name, fractions)


def check_choice(config, name, choices):
    """The field must be one of ``choices``."""
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
