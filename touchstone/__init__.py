"""Touchstone: a small GPT-style language model that tells two versions apart and retrains itself.

Everything the command line does is one import away: see `touchstone.cli` for the map from commands
to functions. Heavy libraries (torch, transformers) are imported inside the functions that need them,
so importing this package and `touchstone --help` stay instant.
"""

__version__ = "0.1.0"
