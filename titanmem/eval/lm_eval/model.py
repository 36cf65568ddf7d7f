"""lm-eval model ``titanmem``: any input length, streamed through the model with its cache.

lm-eval's ``hf`` model cuts long inputs into windows of ``max_length`` and rereads each from an empty
state. This one feeds every request whole, ``piece`` tokens per forward, carrying the
:class:`~titanmem.models.TitansCache`, so the memory sees the full context (and scores equal one
parallel forward over it). Each request is read as a new document: after ``prefix`` (default
``"\\n\\n"``, the separator between training documents), which takes the place of a BOS token.

Importing this module registers the model with lm-eval::

    import titanmem.eval.lm_eval.model
    lm_eval.simple_evaluate(model="titanmem", model_args={"pretrained": "runs/mac"}, tasks=[...])
"""

from __future__ import annotations

import logging
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's own models, e.g. hf, register on this import)
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from ...data.shards import SEPARATOR
from ...data.tokenizers import Tokenizer, get_tokenizer
from ...devices import resolve_device
from ..loading import load_model
from ..perplexity import stream_scores

__all__ = ["TitansLM"]

_log = logging.getLogger(__name__)
_DTYPES = {None: None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}


@register_model("titanmem")
class TitansLM(TemplateLM):
    """A :class:`~titanmem.models.TitansForCausalLM` for lm-eval.

    Args:
        pretrained: a model folder, checkpoint or run folder (see :mod:`titanmem.eval.loading`), or a
            loaded model (then ``tokenizer`` is required).
        tokenizer: a titanmem tokenizer or spec (default: the model's own).
        device: ``cpu``, ``cuda`` or ``auto``; dtype: ``float32`` (default), ``bfloat16`` or ``float64``.
        piece: tokens per forward; prefix: text read before every request (non-empty).
        max_gen_toks: generation limit when a task does not set one.
        batch_size, max_batch_size: accepted for lm-eval's interface; requests run one at a time (the
            model has no padding).
    """

    def __init__(self, pretrained: Any, tokenizer: Tokenizer | str | None = None, device: str | None = "auto",
                 dtype: str | None = None, piece: int = 512, prefix: str = SEPARATOR, max_gen_toks: int = 256,
                 batch_size: Any = None, max_batch_size: Any = None) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str (it stands in for BOS), got {prefix!r}")
        piece, max_gen_toks = int(piece), int(max_gen_toks)
        if piece < 1 or max_gen_toks < 1:
            raise ValueError(f"piece and max_gen_toks must be >= 1, got piece={piece}, max_gen_toks={max_gen_toks}")
        if isinstance(pretrained, torch.nn.Module):
            if tokenizer is None:
                raise ValueError("tokenizer must be given when pretrained is a model object, got None")
            self.model = pretrained.to(device=resolve_device(device), dtype=_DTYPES[dtype]).eval()
            self.tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        else:
            self.model, self.tok = load_model(pretrained, device=device, dtype=_DTYPES[dtype])
            if tokenizer is not None:
                self.tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
        self._device = next(self.model.parameters()).device
        self.piece, self.max_gen_toks = piece, max_gen_toks
        self.prefix_ids = self.tok.encode(prefix)

    @property
    def eot_token_id(self) -> int:
        return self.prefix_ids[-1]

    @property
    def tokenizer_name(self) -> str:
        return self.tok.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tok.encode(string)

    def tok_decode(self, tokens: list[int], **kwargs: Any) -> str:
        return self.tok.decode(tokens)

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """``(log p(continuation | prefix + context), continuation is the greedy one)`` per request."""
        encoded = []
        for context, continuation in (r.args for r in requests):
            ctx, cont = self._encode_pair(context, continuation) if context else ([], self.tok_encode(continuation))
            encoded.append(((context, continuation), self.prefix_ids + ctx, cont))
        return self._loglikelihood_tokens(encoded, disable_tqdm=disable_tqdm)

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        out = []
        for key, context, continuation in tqdm(requests, disable=disable_tqdm, desc="titanmem loglikelihood"):
            if continuation:
                scores = stream_scores(self.model, continuation, context=context, piece=self.piece)
                answer = (-float(scores.nll.sum()), bool(scores.greedy.all()))
            else:
                answer = (0.0, True)
            self.cache_hook.add_partial("loglikelihood", key, answer)
            out.append(answer)
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole text after the prefix, every token scored once with all before it."""
        out = []
        for (text,) in tqdm([r.args for r in requests], disable=disable_tqdm, desc="titanmem rolling"):
            ids = self.tok_encode(text)
            nll = stream_scores(self.model, ids, context=self.prefix_ids, piece=self.piece).nll if ids else None
            ll = 0.0 if nll is None else -float(nll.sum())
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), ll)
            out.append(ll)
        return out

    @torch.no_grad()
    def _generate(self, context: list[int], until: list[str], max_tokens: int, temperature: float) -> str:
        from ...models import TitansCache

        cache, ids = TitansCache(), torch.tensor(context, dtype=torch.long, device=self._device)
        for start in range(0, len(ids), self.piece):
            logits = self.model(ids[None, start : start + self.piece], cache=cache, logits_to_keep=1).logits
        generated: list[int] = []
        text = ""
        for _ in range(max_tokens):
            last = logits[0, -1].float()
            if temperature > 0:
                token = int(torch.multinomial(torch.softmax(last / temperature, dim=-1), 1))
            else:
                token = int(last.argmax())
            generated.append(token)
            text = self.tok_decode(generated)
            stops = [text.find(u) for u in until if u and u in text]
            if stops:
                return text[: min(stops)]
            step = torch.tensor([[token]], device=self._device)
            logits = self.model(step, cache=cache, logits_to_keep=1).logits
        return text

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy decoding (or sampling with ``do_sample`` and ``temperature > 0``) until a stop string."""
        out = []
        for context, gen_kwargs in tqdm([r.args for r in requests], disable=disable_tqdm, desc="titanmem generate"):
            kwargs = dict(gen_kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_tokens = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            do_sample = bool(kwargs.pop("do_sample", False))
            temperature = float(kwargs.pop("temperature", 0.0)) if do_sample else 0.0
            kwargs.pop("temperature", None)
            if kwargs:
                _log.warning("titanmem: ignoring generation arguments %s", sorted(kwargs))
            text = self._generate(self.prefix_ids + self.tok_encode(context), until, max_tokens, temperature)
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), text)
            out.append(text)
        return out

    def get_model_info(self) -> dict[str, Any]:
        """Recorded by lm-eval in the results' ``config``."""
        return {"model_num_parameters": sum(p.numel() for p in self.model.parameters()),
                "model_dtype": str(next(self.model.parameters()).dtype), "piece": self.piece,
                "tokenizer": self.tok.name}
