"""Token mixers (NeuralMemory, Attention). May import ``ops`` and ``modules``."""
