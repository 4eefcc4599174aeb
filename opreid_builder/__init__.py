"""Curation and releases: raw crops -> pose -> occlusion -> face masking -> review -> splits -> release.

Subpackages, bottom up: `curation` (sources, pose, occlusion, faces, masking, stages and engines,
review), `split` (the OPReID protocol and presets, the public datasets' official formats),
`release` (writer, card, Croissant, validation, the participants' package), then `public_datasets`
(import), `synth` and `export`; `build.py` composes curation, split and release; `cli` holds the
commands. docs/architecture.md §2 draws the tree.
"""
