"""Fixtures shared by several test files (servers.py holds the test-server helpers)."""
