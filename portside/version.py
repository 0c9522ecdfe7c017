"""The version of portside."""

__version__ = "0.1.0"
