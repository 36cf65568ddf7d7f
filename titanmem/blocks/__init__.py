"""One file per architecture (LMM, MAC, MAG, MAL, baselines). May import ``ops``, ``modules``, ``layers``."""
