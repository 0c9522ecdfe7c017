"""Differential fuzzing of portside's parsers (see fuzzing/README.md)."""
