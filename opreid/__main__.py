"""`python -m opreid` and `torchrun -m opreid`: the `opreid` command line, with its error policy."""

from opreid_builder.cli import main

main()
