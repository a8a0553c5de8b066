"""Protobuf schema layer: ``.proto`` files shipped in this package, a small parser, descriptors,
and the proto3 JSON codec (connect.md §9, §10). The binary codec builds on the same descriptors.
"""
