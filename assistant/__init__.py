"""assistant: the serving and tuning side of the domain assistant.

The HTTP service, grounded answering and re-tuning land here in later steps;
today the package offers the `assistant` command with `info`.
"""

from indexer.library_logs import demote_known_noise

__version__ = "0.1.0"

# peft (and bitsandbytes with it) is imported lazily by several modules here, some of
# which import nothing else from indexer first
demote_known_noise()
