"""Evaluation: how well the assistant answers, measured with no judge model.

Owns the evaluation sets (:mod:`.sets`, the built-in ones from the shared data in
:mod:`.builtin_sets`), the scores (:mod:`.scoring`), batch answering as the service
would (:mod:`.answers`), general drift from the base model (:mod:`.drift`), the run
over systems × sets (:mod:`.run`), its report (:mod:`.report`) and the checkpoint
curve (:mod:`.checkpoints`). The tuning gate borrows answers, drift and scoring.

May import: :mod:`assistant.grounding`, :mod:`assistant.generation`, :mod:`indexer`,
:mod:`assistant.settings`, :mod:`assistant.plots`. Never the web framework or tuning.
"""
