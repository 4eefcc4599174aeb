"""`python -m opreid` and `torchrun -m opreid`: the `opreid` command line, with its error policy."""

from opreid.cli import main

main()
