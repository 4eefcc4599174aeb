"""Commands this package adds to the `opreid` CLI (imported by the root; must stay light)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("opreid_builder.cli.synth:synth", "Generate synthetic pedestrian crops (Market-1501 names)."),
    "curate": (
        "opreid_builder.cli.curate:curate",
        "Curate raw crops: pose, occlusion flags, face masking (no split).",
    ),
    "review": (
        "opreid_builder.cli.curate:review",
        "Write a paginated review site to check occlusion flags and download corrections.",
    ),
    "occlusion": (
        "opreid_builder.cli.curate:occlusion",
        "Occlusion flag tools (calibrate rules and flags on labelled crops, fit a learned flag).",
    ),
    "build-split": (
        "opreid_builder.cli.build_split:build_split",
        "Curate RAW, draw the OPReID split and write the release.",
    ),
    "validate": (
        "opreid_builder.cli.validate:validate_cmd",
        "Check every invariant of a built release (checksums, leaks, protocol).",
    ),
    "import": (
        "opreid_builder.cli.import_dataset:import_cmd",
        "Import a public ReID benchmark (Market-1501, Occluded-Duke, ...) in its official split.",
    ),
    "release": (
        "opreid_builder.cli.release:release",
        "Package a release for participants: public files only, a sample submission, instructions.",
    ),
    "export": (
        "opreid_builder.cli.export:export_cmd",
        "Export a release to the Market-1501 layout (needs the private ground truth).",
    ),
}
