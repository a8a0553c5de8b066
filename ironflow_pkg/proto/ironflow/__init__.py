"""Data package: the ironflow .proto files (read via importlib.resources)."""
