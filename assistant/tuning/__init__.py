"""Tuning: re-tuning the model on the user's curated corpus.

Owns the curated pairs format (:mod:`.pairs`), feedback export (:mod:`.feedback`), the
RAFT set (:mod:`.raft`), the QLoRA recipe (:mod:`.trainer` over :mod:`.train_settings`,
:mod:`.packed_data`, :mod:`.lora_model`, :mod:`.run_files`, :mod:`.lr_range`), the
evaluation gate (:mod:`.gate`), the pipeline of stages (:mod:`.pipeline`, its spec and
result in :mod:`.spec`) and the service's jobs that run it in a child process
(:mod:`.jobs`).

May import: :mod:`assistant.evaluation`, :mod:`assistant.grounding`,
:mod:`assistant.generation`, :mod:`indexer`, :mod:`assistant.settings`,
:mod:`assistant.plots`. Never the web framework.
"""
