"""assistant: the serving and tuning side of the domain assistant.

The HTTP service, grounded answering and re-tuning land here in later steps;
today the package offers the `assistant` command with `info`.
"""

__version__ = "0.1.0"
