"""indexer: the data side of the domain assistant.

The compiled core (`indexer._native`, built from `rust/`) is private; import
its functions from :mod:`indexer.native`, the typed facade.
"""

from indexer.library_logs import demote_known_noise

__version__ = "0.1.0"

# before any model library is imported: the lines it demotes are logged at import time
demote_known_noise()
