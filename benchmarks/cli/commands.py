"""Commands this package adds to the `opreid` CLI (imported by the root; must stay light)."""

COMMANDS: dict[str, tuple[str, str]] = {
    "score": (
        "benchmarks.cli.score:score",
        "Validate a submission and score it (Rank-k, mAP, mINP) against the ground truth.",
    ),
    "check": (
        "benchmarks.cli.check:check",
        "Check a submission against a participants' package offline (shape, dtype, order, values, size).",
    ),
    "leaderboard": (
        "benchmarks.cli.leaderboard:leaderboard",
        "Run a leaderboard: teams, quotas, public/private standings, web page.",
    ),
}
