"""Evaluation: perplexity, needle-in-a-haystack, BABILong-style, MQAR, lm-eval adapter."""
