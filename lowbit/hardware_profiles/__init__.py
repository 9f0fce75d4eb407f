"""Built-in hardware profiles: one TOML file per target (data only, see README.md)."""

from pathlib import Path

#: directory holding the built-in ``*.toml`` profiles
PROFILE_DIR = Path(__file__).resolve().parent
