"""lowbit: the CLI and HTTP service over hwsim, models, search and reports (wiring only)."""

__version__ = "0.2.0"
