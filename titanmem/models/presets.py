"""Named model sizes for :meth:`TitansConfig.from_preset` (plain dicts of config fields).

- ``tiny``: byte-level, about 1.5M parameters (MAC): sized to train on a laptop CPU.
- ``small``: byte-level, about 8M parameters (MAC).
- ``170m``, ``340m``, ``760m``: the paper's sizes (Titans §5.1) with the Llama-2 32K vocabulary,
  tied embeddings.

Parameters per variant (tied embeddings counted once; counted on the meta device, as
``tests/models/test_modeling.py`` checks):

    ======  ========  ========  ========  ========  ===========  ========
    preset  lmm       mac       mag       mal       transformer  swa
    ======  ========  ========  ========  ========  ===========  ========
    tiny    1.10M     1.49M     1.36M     1.36M     0.89M        0.89M
    small   6.03M     8.39M     7.61M     7.61M     5.19M        5.19M
    170m    128.88M   171.49M   157.35M   157.34M   116.76M      116.76M
    340m    239.36M   340.28M   306.76M   306.74M   213.42M      213.42M
    760m    532.05M   758.94M   683.49M   683.46M   474.27M      474.27M
    ======  ========  ========  ========  ========  ===========  ========

The paper's sizes are matched for MAC (171,490,992 / 340,283,136 / 758,936,832); MAC carries the
most per block (its retrieval projections on top of attention and memory), the Transformer++
baseline the least. Depth 16 rather than 24 at 340m and 760m keeps MAC at the named size with a
SwiGLU width of about 2.25-2.4x the model width.

The memory rules of the Titans family (docs/miras_atlas.md), each at the tiny size under its own name
and at the paper sizes as ``<name>-170m`` / ``-340m`` / ``-760m``, all with ``variant="lmm"`` (the
memory as the only token mixer, as MIRAS's three models and ATLAS's OmegaNet and Atlas are; a
training config's ``model.variant``, "mac" unless given, replaces it: write ``variant = "lmm"``):

- ``moneta``: lp objective (p = 3) with lq retention (q = 4) (MIRAS);
- ``yaad``: Huber objective with a learned threshold, Titans' decay (MIRAS);
- ``memora``: l2 objective with KL (softmax) retention (MIRAS);
- ``omeganet``: the Omega rule over a window of 4 tokens with degree-2 polynomial features (ATLAS);
- ``atlas``: ``omeganet`` with the Muon step (five Newton-Schulz iterations) (ATLAS).

The window of 4 is one of ATLAS's sweep values (2, 4, 8, 16; the paper's default is not known to us)
and the degree 2 the smallest polynomial map (the degree used is not stated).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..ops import NAMED_RULES, TITANS, MemoryRule

__all__ = ["FAMILY_RULES", "PRESETS", "preset_variant"]

_BYTES = dict(vocab_size=256, chunk_size=64, segment_size=64, window=64, n_persistent=4)
# Paper-sized models: 32K Llama-2 vocabulary, 4K-token training context.
_PAPER = dict(vocab_size=32000, chunk_size=64, segment_size=256, window=512, n_persistent=16)

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(_BYTES, hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=384),
    "small": dict(_BYTES, hidden_size=256, num_hidden_layers=6, num_attention_heads=8, intermediate_size=768),
    "170m": dict(_PAPER, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=2304),
    "340m": dict(_PAPER, hidden_size=1024, num_hidden_layers=16, num_attention_heads=16, intermediate_size=2304),
    "760m": dict(_PAPER, hidden_size=1536, num_hidden_layers=16, num_attention_heads=16, intermediate_size=3712),
}

# The papers' models as TitansConfig fields: each rule of titanmem.ops.NAMED_RULES (where the rules are
# defined once) written as the memory_* fields in which it differs from Titans, e.g. moneta's
# {"memory_objective": "lp", "memory_retention": "lq"} (p = 3 and q = 4 are the defaults).
FAMILY_RULES: dict[str, dict[str, Any]] = {
    name: {f"memory_{f.name}": getattr(NAMED_RULES[name], f.name) for f in dataclasses.fields(MemoryRule)
           if getattr(NAMED_RULES[name], f.name) != getattr(TITANS, f.name)}
    for name in ("moneta", "yaad", "memora", "omeganet", "atlas")
}

for _name, _rule in FAMILY_RULES.items():
    PRESETS[_name] = dict(PRESETS["tiny"], variant="lmm", **_rule)
    for _size in ("170m", "340m", "760m"):
        PRESETS[f"{_name}-{_size}"] = dict(PRESETS[_size], variant="lmm", **_rule)


def preset_variant(name: str) -> str:
    """The block variant preset ``name`` builds when a config names none: its own (``"lmm"`` for the
    family presets) or TitansConfig's default ``"mac"``. Unknown names also give ``"mac"``; the
    config check that follows reports them."""
    return PRESETS.get(name, {}).get("variant", "mac")
