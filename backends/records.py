"""The typed JSON records of manifest.json (`Record`, `Fields`, `Section`): defined in
`compiler/records.py`, because some of the compiler's own results (a stage's quantization) are
records themselves and are written to the manifest as they are."""

from ..compiler.records import (  # noqa: F401 - the names backends and tools import from here
    JsonSection, ManifestError, Fields, Record, Section, frozen, plain,
)
