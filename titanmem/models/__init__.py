"""Hugging Face-compatible models; the only stratum that imports ``transformers``."""
