"""protrep: protein representations from single-cell microscopy."""

__version__ = "0.1.0"
