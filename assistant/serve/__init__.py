"""Serve: the HTTP face of the assistant (Litestar).

Owns the app factory and its lifespan (:mod:`.app`), the resources it opens
(:mod:`.resources`), keys, roles and the route guard (:mod:`.auth`), the one mapping
of exceptions to JSON errors (:mod:`.errors`), request limits (:mod:`.limits`,
:mod:`.rate_limit`), metrics (:mod:`.metrics`), the answer and feedback records
(:mod:`.records`), uploads (:mod:`.uploads`), the OpenAI wire format
(:mod:`.openai_compat`) and one routes module per resource.

The top layer: may import every other package of the assistant and :mod:`indexer`;
nothing below imports it.
"""
