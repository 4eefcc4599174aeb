"""Builders the tests share: plain functions and classes that make data (synthetic crops, pools,
releases, submissions, a throwaway PostgreSQL server). Fixtures live in tests/conftest.py, and no
test module imports another test module."""
