"""Commands this package adds to the `opreid` CLI (imported by the root; must stay light)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "reid_model.cli.train:train",
        "Train the reference model (config preset or YAML, key=value overrides).",
    ),
    "extract": (
        "reid_model.cli.extract:extract",
        "Turn a checkpoint into a query x gallery distance matrix or features.",
    ),
    "report": (
        "reid_model.cli.report:report",
        "Tabulate runs in the shape of the paper's Tables 3-5, beside its published numbers.",
    ),
    "ablate": (
        "reid_model.cli.ablate:ablate",
        "Train the Table 5 variants over several seeds; mean and std beside the paper's rows.",
    ),
}
