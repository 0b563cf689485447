"""The one table of intra-layer splits: which op takes which kind, under which plan words, merged how.

The split-layer pass finds its rewrite here and the plan lowering validates `split`
statements and words their errors from the same rows (it lives in `compiler/` so the plan
language can use it without importing the passes), so what the language accepts and what
the pass can do never drift apart. The plan's aliases (`filter` = output channels of a Conv,
`channel` = its input channels) exist only in this table. The op-name sets that the split
rules (and the passes to come) test against live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

ELEMENTWISE = frozenset({"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Elu", "HardSigmoid", "Softplus", "Clip", "Identity"})
"""Unary element-wise ops: exact on any slice of their input."""

CHANNELWISE = frozenset({"BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
"""Ops that treat each channel on its own: exact on a slice of channels (with their parameters sliced)."""

SPATIALLY_POINTWISE = ELEMENTWISE | {"BatchNormalization", "LRN", "PRelu", "Dropout", "Add", "Sub", "Mul", "Div"}
"""Ops without a spatial window: a row band of the output needs the same band of the input."""

WINDOWED = frozenset({"Conv", "MaxPool", "AveragePool"})
"""Ops with a spatial window: a tile of the output needs a larger tile (the halo) of the input."""

Kind = Literal["output", "input", "spatial"]


@dataclass(frozen=True)
class SplitRule:
    """One row: `op_type` split by `kind` (plan words `words`); the parts merge by `merge`."""

    op_type: str
    kind: Kind
    words: tuple[str, ...]
    merge: Literal["concat", "sum"]
    meaning: str

    def rewrite(self) -> Callable:
        """The rewrite function (imported on use: the plan lowering needs only the table)."""
        from ..passes.split_conv import split_conv
        from ..passes.split_fc import split_gemm, split_matmul

        return {"Conv": split_conv, "Gemm": split_gemm, "MatMul": split_matmul}[self.op_type]


RULES: tuple[SplitRule, ...] = (
    SplitRule("Gemm", "output", ("output",), "concat", "each part computes a slice of the output neurons"),
    SplitRule("Gemm", "input", ("input",), "sum", "each part takes a slice of the input features"),
    SplitRule("MatMul", "output", ("output",), "concat", "each part computes a slice of the output columns"),
    SplitRule("MatMul", "input", ("input",), "sum", "each part takes a slice of the input features"),
    SplitRule("Conv", "output", ("filter", "output"), "concat", "each part computes a slice of the filters"),
    SplitRule("Conv", "input", ("channel", "input"), "sum", "each part convolves a slice of the input channels"),
)

SPATIAL_WORDS = ("spatial",)
SPLIT_WORDS: tuple[str, ...] = tuple(dict.fromkeys(w for r in RULES for w in r.words)) + SPATIAL_WORDS
"""Every word the plan's `split … by WORD` accepts."""


def rule_for(op_type: str, word: str) -> SplitRule | None:
    """The row for `op_type` split `by word`, or None (spatial chains have their own rewrite)."""
    for rule in RULES:
        if rule.op_type == op_type and word in rule.words:
            return rule
    return None


def canonical_kind(op_type: str, word: str) -> Kind | None:
    if word in SPATIAL_WORDS:
        return "spatial"
    rule = rule_for(op_type, word)
    return rule.kind if rule else None


def words_for(op_type: str) -> tuple[str, ...]:
    """The plan words `op_type` accepts (spatial for ops that can be tiled)."""
    words = tuple(w for r in RULES if r.op_type == op_type for w in r.words)
    if op_type in WINDOWED | SPATIALLY_POINTWISE:
        words += SPATIAL_WORDS
    return words


def splittable_ops() -> tuple[str, ...]:
    return tuple(dict.fromkeys(r.op_type for r in RULES))
