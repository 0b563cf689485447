"""Backends read a finished `Program` and write per-device artifacts; they never change the IR."""
