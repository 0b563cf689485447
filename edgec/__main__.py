"""`python -m edgec` is the `edgec` command."""

from .cli import main

main()
