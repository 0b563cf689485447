"""Coded distributed computing: parity parts for output-split linear layers, and the code behind them.

`CdcEncode` is the pass; `code` is the systematic MDS code (sum code for R = 1, Chebyshev for
R > 1), `request` what a `cdc` statement asks, `record` what the decoder needs per coded layer.
"""

from __future__ import annotations

from .encode_pass import CdcEncode
from .record import CdcLayer
from .request import CDC, CdcRequest

__all__ = ["CdcEncode", "CdcLayer", "CdcRequest", "CDC"]
