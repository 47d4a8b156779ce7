"""indexer: the data side of the domain assistant.

The compiled core (`indexer._native`, built from `rust/`) is private; import
its functions from :mod:`indexer.native`, the typed facade.
"""

__version__ = "0.1.0"
