"""repro: make ML training runs reproducible by prefixing their command."""

__version__ = "0.1.0"
