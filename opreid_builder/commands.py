"""Commands this package adds to the `opreid` CLI (imported by the root; must stay light)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("opreid_builder.synth_cli:synth", "Generate synthetic pedestrian crops (Market-1501 names)."),
}
