"""The manifest-driven cdc decoder: the parts rebuilt from a compiled output's `cdc` section and run rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "passes" / "cdc"))

import edgec  # noqa: E402
from cdc_helpers import coded, fc_model, plan, run_rows  # noqa: E402
from edgec.runtime.cdc_decode import Decoder  # noqa: E402
from edgec.runtime.outputs import CompiledOutput  # noqa: E402


def test_decoder_from_the_manifest_rebuilds_each_missing_part(tmp_path):
    model, text = fc_model(n=10), plan(3, 2)
    edgec.compile(model, text, tmp_path / "out")
    (entry,) = CompiledOutput.open(tmp_path / "out").manifest.cdc.layers
    feeds = {"x": np.random.default_rng(3).standard_normal((2, 6)).astype(np.float32)}
    _, rows = run_rows(coded(model, text), feeds)
    names = [*entry.parts, *entry.parities]
    decoder = Decoder(entry)
    for lost in ([entry.parts[0]], [entry.parts[1], entry.parts[2]], [entry.parities[0]]):
        parts, rebuilt = decoder.recover({n: rows[i] for i, n in enumerate(names) if n not in lost})
        assert rebuilt == [n for n in lost if n in entry.parts]
        for i, name in enumerate(entry.parts):
            np.testing.assert_allclose(parts[name], rows[i], rtol=1e-4, atol=1e-5)
    with pytest.raises(KeyError, match="neither a part nor a parity"):
        decoder.recover({"x": rows[0]})
