"""Evaluation: perplexity, needle-in-a-haystack, BABILong-style, MQAR, lm-eval adapter.

Each evaluation is used through its own module (``titanmem.eval.perplexity``, ``titanmem.eval.tasks``,
``titanmem.eval.compare``, ...), and the package re-exports nothing: ``titanmem eval <command>``
imports only the module of the command it runs, which a re-export here would defeat by importing
every evaluation module whenever one of them is used.
"""

__all__: list[str] = []
