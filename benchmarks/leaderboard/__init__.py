"""The leaderboard: teams and hashed tokens, quotas, a hidden public/private query split,
standings, exports and a small web page, stored through SQLAlchemy (SQLite or PostgreSQL).

Scores come from `benchmarks.scoring`; nothing here computes a metric.
"""
