"""Builders shared by the test archives and the benchmark corpus."""
