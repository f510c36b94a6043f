"""Helpers the test packages share (and bench/ too): see each module."""
