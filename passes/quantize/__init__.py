"""The quantize pass as a package of small modules; `Quantize` is the pass (`quantize_pass.py`)."""

from __future__ import annotations

from .quantize_pass import Quantize

__all__ = ["Quantize"]
