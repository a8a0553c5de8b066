"""Data package: hand-written minimal google/protobuf/*.proto (read via importlib.resources)."""
