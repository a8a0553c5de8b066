"""Data package: minimal well-known type definitions (read via importlib.resources)."""
