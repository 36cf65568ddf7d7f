"""Small nn pieces (RMSNorm, SwiGLU, causal depthwise conv, rotary). May import ``titanmem.ops``."""
