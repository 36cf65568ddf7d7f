"""The memory rule: which point of the Titans / MIRAS / ATLAS design space the family op computes.

Titans (arXiv 2501.00663) is one point of a design space mapped by MIRAS (arXiv 2504.13173: the
memory's objective or "attentional bias", its retention and its inner optimizer) and ATLAS
(arXiv 2505.23735: the Omega rule's window of past tokens, polynomial feature maps and a
Newton-Schulz-orthogonalised step). :class:`MemoryRule` names one point; ``TITANS`` is the default,
for which the family op computes exactly what ``neural_memory_naive``/``neural_memory_chunk`` do.
The equations are in :mod:`titanmem.ops.neural_memory.family_naive` and docs/miras_atlas.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_int, check_real

__all__ = ["FEATURE_MAPS", "NAMED_RULES", "OBJECTIVES", "OPTIMIZERS", "RETENTIONS", "TITANS", "MemoryRule"]

OBJECTIVES = ("l2", "lp", "huber")
RETENTIONS = ("decay", "lq", "kl")
OPTIMIZERS = ("momentum", "muon")
FEATURE_MAPS = ("identity", "poly")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(value).__name__} ({value!r})")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


@dataclass(frozen=True)
class MemoryRule:
    """One memory rule of the family (every field has the Titans value by default).

    Attributes:
        objective: the attentional bias ``l(W; k, v)`` with ``e = M_W(k) - v``: ``"l2"`` ``||e||^2``
            (Titans), ``"lp"`` ``||e||_p^p`` (MIRAS Moneta, eq. 24), ``"huber"`` (MIRAS Yaad, eq. 26:
            the l2 gradient when ``||e|| <= delta_t``, else ``delta_t`` times the l1 gradient).
        p: exponent of ``"lp"``, >= 1 (Moneta uses 3).
        sign_sharpness: ``a`` of the smooth sign ``Sign(x) ~ tanh(a x)`` (MIRAS) in ``"lp"`` and
            ``"huber"``, > 0.
        abs_eps: ``eps`` of the smooth absolute value ``|x| ~ sqrt(x^2 + eps)`` in ``"lp"``, > 0.
        retention: ``"decay"`` the Titans weight decay ``W_t = (1 - alpha_t) W_{t-1} + step``;
            ``"lq"`` (Moneta) an accumulator ``A`` decayed the same way and read as
            ``W = A / ||A||_q^{q-2}``; ``"kl"`` (Memora, eq. 27) logits ``A`` decayed the same way
            and read as ``W = softmax(A)`` over each row (the KL retention's mirror step).
        q: exponent of ``"lq"``, > 1 (Moneta uses 4; q = 2 is the decay rule).
        optimizer: ``"momentum"`` (Titans: ``S_t = eta_t S_{t-1} - theta_t g_t``, step ``S_t``) or
            ``"muon"`` (ATLAS eqs. 32-33: ``S_t = eta_t S_{t-1} - g_t``, step
            ``theta_t NS(S_t)``, NS the Newton-Schulz orthogonalisation of each layer's matrix).
        ns_steps: Newton-Schulz iterations of ``"muon"``, >= 1 (ATLAS: 5).
        window: the Omega rule's ``c`` >= 1: the surprise of token t is the gradient of the gated sum
            of the losses of tokens ``t-c+1..t`` (ATLAS eq. 9; 1 is Titans).
        feature_map: ``"identity"`` or ``"poly"``: keys and queries enter the memory as
            ``phi(x)``, every monomial of degree 1..``feature_degree`` (ATLAS §3).
        feature_degree: highest degree of ``"poly"``, >= 1 (1 is the identity).

    Raises:
        TypeError / ValueError naming the field, for a value of the wrong type or out of range.
    """

    objective: str = "l2"
    p: float = 3.0
    sign_sharpness: float = 10.0
    abs_eps: float = 1e-6
    retention: str = "decay"
    q: float = 4.0
    optimizer: str = "momentum"
    ns_steps: int = 5
    window: int = 1
    feature_map: str = "identity"
    feature_degree: int = 2

    def __post_init__(self) -> None:
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("retention", self.retention, RETENTIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("feature_map", self.feature_map, FEATURE_MAPS)
        object.__setattr__(self, "p", check_real("p", self.p, 1.0))
        object.__setattr__(self, "sign_sharpness", check_real("sign_sharpness", self.sign_sharpness, 0.0,
                                                              low_open=True))
        object.__setattr__(self, "abs_eps", check_real("abs_eps", self.abs_eps, 0.0, low_open=True))
        object.__setattr__(self, "q", check_real("q", self.q, 1.0, low_open=True))
        check_int("ns_steps", self.ns_steps, 1)
        check_int("window", self.window, 1)
        check_int("feature_degree", self.feature_degree, 1)

    @property
    def is_titans(self) -> bool:
        """Whether this rule is Titans' (l2, decay, momentum, window 1, identity features)."""
        return (self.objective == "l2" and self.retention == "decay" and self.optimizer == "momentum"
                and self.window == 1 and self.feature_map == "identity")


TITANS = MemoryRule()

# The rules by name: each choice alone, then the papers' models (as the presets of titanmem.models
# set them through TitansConfig). The benchmarks and the op-level capacity sweep name rules this way.
NAMED_RULES: dict[str, MemoryRule] = {
    "titans": TITANS,
    "lp": MemoryRule(objective="lp"),
    "huber": MemoryRule(objective="huber"),
    "lq": MemoryRule(retention="lq"),
    "kl": MemoryRule(retention="kl"),
    "muon": MemoryRule(optimizer="muon"),
    "window4": MemoryRule(window=4),
    "poly2": MemoryRule(feature_map="poly", feature_degree=2),
    "moneta": MemoryRule(objective="lp", retention="lq"),
    "yaad": MemoryRule(objective="huber"),
    "memora": MemoryRule(retention="kl"),
    "omeganet": MemoryRule(window=4, feature_map="poly", feature_degree=2),
    "atlas": MemoryRule(window=4, feature_map="poly", feature_degree=2, optimizer="muon"),
}
