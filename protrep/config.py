"""Helpers shared by the frozen configuration dataclasses (SimConfig, ModelConfig, TrainConfig)."""

import dataclasses

__all__ = ["from_dict"]


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
