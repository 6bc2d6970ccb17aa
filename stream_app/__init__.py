"""badbuzz: real-time bad-buzz detection on tweet streams."""

__version__ = "0.1.0"
