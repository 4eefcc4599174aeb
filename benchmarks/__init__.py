"""Scoring: submission formats and validation, Market-protocol metrics, and the leaderboard."""
