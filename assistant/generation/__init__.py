"""Generation: the language model behind every answer.

Owns the backends (:mod:`.local` transformers + peft, :mod:`.openai` an
OpenAI-compatible server) behind one protocol (:mod:`.base`), the micro-batching
queue (:mod:`.queue`), the base model's files (:mod:`.model_files`), the adapter
registry on disk (:mod:`.registry`) and the one place that switches the active
adapter (:mod:`.adapters`).

May import: :mod:`assistant.settings`. Never the web framework, grounding, tuning,
evaluation or the index.
"""
