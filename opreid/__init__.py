"""`python -m opreid ...` runs the `opreid` command (e.g. `torchrun --nproc_per_node 4 -m opreid train ...`)."""
