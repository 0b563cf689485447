"""Backends read a finished `Program` and write per-device artifacts; they never change the IR.

`backend.py` is the interface every backend implements, `registry.py` finds them by name
(built-ins, registered ones, `edgec.backends` entry points), `artifacts.py` runs them into an
output directory, and `manifest.py` is the typed description of that output they all add to.
"""
