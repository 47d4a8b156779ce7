"""Grounding: the question flow — retrieve → prompt → generate → check → answer.

Owns the numbered passages and the prompt that shows them (:mod:`.passages`), the
post-check that decides what the user may be shown (:mod:`.check`), and the
answerer that runs the flow for the service and the command line (:mod:`.answerer`).

May import: :mod:`assistant.generation`, :mod:`indexer`, :mod:`assistant.settings`.
Never the web framework, tuning or evaluation.
"""
