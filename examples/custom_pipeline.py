"""Use edgec as a library: build a Program by hand, run your own pass pipeline, inspect the IR.

    python examples/custom_pipeline.py            # needs examples/tiny_cnn.onnx (python examples/tiny_cnn.py)

This is what another compiler embedding edgec does: no plan file, placements set in code,
a pass of its own between edgec's passes, the printed IR after each pass, and the ONNX
backend writing the artifacts.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import edgec
from edgec.backends.artifacts import write_artifacts
from edgec.compiler.annotations import PLACEMENT, Placement
from edgec.compiler.platform import Device, Platform
from edgec.passes import CommInsert, SplitVertical
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify


class CountCrossings(edgec.Pass):
    """A user pass: reports how many edges cross devices; changes nothing (modified=False)."""

    name = "count-crossings"

    def call(self, program: edgec.Program) -> edgec.PassResult:
        crossings = sum(
            1 for node in program.nodes() for pred in node.predecessors()
            if pred.meta[PLACEMENT].device != node.meta[PLACEMENT].device
        )
        return edgec.PassResult(False, f"{crossings} cross-device edges")


def main() -> None:
    model_path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("tiny_cnn.onnx")
    platform = Platform()
    platform.add(Device("edge", cores=2))
    platform.add(Device("server", cores=4))
    program = edgec.Program(edgec.load_model(model_path), platform)
    for index, node in enumerate(program.nodes()):
        node.meta[PLACEMENT] = Placement("edge" if index < 8 else "server")
    program.facts.add(edgec.Fact.PLACED)

    def show(p: edgec.Pass, prog: edgec.Program, result: edgec.PassResult) -> None:
        print(f"after {p.name}: modified={result.modified} {result.summary}")

    edgec.PassManager([SplitVertical(), CountCrossings(), CommInsert()], hooks=[show]).run(program)
    print("\n".join(edgec.format_program(program).splitlines()[:6]))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        manifest = write_artifacts(program, out, model_info={"path": str(model_path.resolve()), "sha256": None},
                                   plan_info=None)
        report = verify(out, random_inputs(manifest))
        print(f"verify: {'ok' if report.ok else 'MISMATCH'} (max rel err {max(o.max_rel for o in report.outputs):.2e})")


if __name__ == "__main__":
    main()
