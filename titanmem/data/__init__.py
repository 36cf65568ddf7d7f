"""Corpora from package registries, tokenizers and synthetic long-context tasks."""
