"""Accord: an open-source integration hub for professional-services firms."""

__all__ = ["__version__"]

__version__ = "0.1.0"
