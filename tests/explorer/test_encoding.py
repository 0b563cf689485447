"""Every genome decodes to a valid plan: contiguous non-empty stages covering every unit, on distinct devices."""

from __future__ import annotations

import numpy as np
from hypothesis import given, strategies as st

from edgec.explorer.cost_model import Plan
from edgec.explorer.encoding import Encoding


@st.composite
def encodings_and_genomes(draw):
    units, devices = draw(st.integers(1, 40)), draw(st.integers(1, 12))
    wires = tuple(draw(st.lists(st.sampled_from(["float32", "fp16", "int8"]), min_size=1, max_size=3, unique=True)))
    encoding = Encoding(units, devices, draw(st.integers(1, min(units, devices))), wires)
    genome = [draw(st.integers(int(lo), int(hi))) for lo, hi in zip(encoding.lower, encoding.upper)]
    return encoding, genome


@given(encodings_and_genomes())
def test_every_genome_decodes_to_a_valid_plan(case):
    encoding, genome = case
    plan = encoding.decode(genome)
    starts = list(plan.starts)
    assert starts[0] == 0 and starts == sorted(set(starts)) and starts[-1] < encoding.units
    assert 1 <= len(starts) <= encoding.stages
    assert len(plan.devices) == len(starts) == len(set(plan.devices))
    assert all(0 <= d < encoding.devices for d in plan.devices) and plan.wire in encoding.wires
    assert encoding.decode(encoding.encode(plan)) == plan


@given(encodings_and_genomes(), st.floats(-0.49, 0.49))
def test_rounded_real_genes_decode_like_integers(case, jitter):
    encoding, genome = case
    assert encoding.decode(np.asarray(genome, dtype=float) + jitter) == encoding.decode(genome)


def test_a_longer_encoding_keeps_a_shorter_plan():
    plan = Plan((0, 3), (2, 0))
    assert Encoding(10, 4, 4).decode(Encoding(10, 4, 4).encode(plan)) == plan
