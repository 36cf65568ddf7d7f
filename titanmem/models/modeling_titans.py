"""``TitansModel``, ``TitansForCausalLM`` and ``TitansForSequenceClassification``: a stack of one variant's
blocks as a Hugging Face model.

Axes: ``B`` batch, ``T`` tokens of this call, ``C`` hidden size, ``V`` vocabulary, ``L`` labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.generation import GenerationMode
from transformers.modeling_outputs import (
    BaseModelOutputWithPast, CausalLMOutputWithPast, SequenceClassifierOutputWithPast,
)

from ..blocks import build_block
from ..layers import NeuralMemory
from ..modules.norm import RMSNorm
from .cache import TitansCache
from .configuration_titans import TitansConfig
from .hf_compat import CACHE_KWARG

__all__ = [
    "TitansForCausalLM", "TitansForSequenceClassification", "TitansModel", "TitansPreTrainedModel",
    "sequence_classification_loss",
]


def _check_attention_mask(attention_mask: torch.Tensor | None, batch: int, length: int, seen: int) -> None:
    """Refuse a mask that does not describe this call's ``[batch, length]`` tokens, or one with padding.

    ``attention_mask`` may cover this call's tokens (``[B, T]``) or, as ``generate`` passes it, every
    token of the sequence so far (``[B, seen + T]``).
    """
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch.Tensor or None, got {type(attention_mask).__name__}")
    shape = tuple(attention_mask.shape)
    allowed = {(batch, length), (batch, seen + length)}
    if shape not in allowed:
        with_cache = f" or (batch, cached + new tokens) = {(batch, seen + length)}" if seen else ""
        raise ValueError(
            f"attention_mask must have the shape of input_ids {(batch, length)}{with_cache}, got {shape}"
        )
    # A padded position would still be written into the memory (and shift every later chunk and
    # segment boundary), so masking it out of attention alone would not make padding harmless.
    if bool((attention_mask == 0).any()):
        raise ValueError(
            "attention_mask must contain only ones: padding is not supported, because padded tokens would "
            "still change the memory's contents and chunk boundaries; run sequences of different lengths "
            f"separately (got a mask of shape {shape} with zeros)"
        )


def _one_cache(cache: TitansCache | None, past_key_values: TitansCache | None) -> TitansCache | None:
    """The cache given under either name (``cache``, transformers >= 5.24, or ``past_key_values``)."""
    if cache is not None and past_key_values is not None and cache is not past_key_values:
        raise ValueError("got two different caches, as cache and as past_key_values: pass one of them")
    cache = past_key_values if cache is None else cache
    if cache is not None and not isinstance(cache, TitansCache):
        raise TypeError(f"cache must be a TitansCache or None, got {type(cache).__name__}")
    return cache


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Cross-entropy of ``logits [B, T, V]`` at position t against ``labels [B, T]`` at t + 1.

    Computed in at least float32 (float64 logits stay float64, for numerical checks); positions whose
    label is ``ignore_index`` do not count. With ``num_items_in_batch`` the sum is divided by it
    (gradient accumulation over batches of uneven token counts), else it is the mean.
    """
    logits = logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32))
    target = labels[:, 1:].to(logits.device)
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=ignore_index,
                           reduction=reduction)
    return loss if num_items_in_batch is None else loss / num_items_in_batch


class TitansPreTrainedModel(PreTrainedModel):
    """Weight init and Hugging Face plumbing shared by the Titans models."""

    config_class = TitansConfig
    config: TitansConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["LMMBlock", "MACBlock", "MAGBlock", "MALBlock", "TransformerBlock"]
    _skip_keys_device_placement = ["cache", "past_key_values"]
    # The blocks carry recurrent state: a generated token cannot be taken back (assisted decoding).
    _is_stateful = True

    def _init_weights(self, module: nn.Module) -> None:
        # Only linear and embedding weights: the norms' ones, the gate biases (mild learning rate,
        # moderate momentum, little forgetting), the initial memory and the persistent tokens keep the
        # initialisation their layers chose.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)


class TitansModel(TitansPreTrainedModel):
    """Token embedding -> ``num_hidden_layers`` blocks of ``config.variant`` -> final RMSNorm."""

    def __init__(self, config: TitansConfig) -> None:
        super().__init__(config)
        spec = config.block_spec()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(build_block(config.variant, spec) for _ in range(config.num_hidden_layers))
        for name, module in self.layers.named_modules(prefix="layers"):
            if isinstance(module, NeuralMemory):  # errors then say which layer: "layers.3.memory"
                module.name = name
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: TitansCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: TitansCache | None = None,
    ) -> BaseModelOutputWithPast | tuple:
        """``input_ids [B, T]`` (or ``inputs_embeds [B, T, C]``) -> ``last_hidden_state [B, T, C]``.

        With ``cache`` (or its older name ``past_key_values``; the same object under both is fine) the
        tokens continue the sequences it holds, and it is updated in place; with ``use_cache`` (default
        ``config.use_cache``) and no cache a new one is returned, under the installed transformers'
        field name (``cache`` from 5.24, else ``past_key_values``). ``attention_mask`` is ``[B, T]``
        or ``[B, cached + T]`` and all ones. ``hidden_states`` (with ``output_hidden_states``): the
        embeddings, then each block's output ``[B, T, C]`` before the final norm.

        Raises:
            ValueError: both or neither of ``input_ids`` and ``inputs_embeds``; two different caches;
                an ``attention_mask`` of another shape or with zeros (padding).
            TypeError: a cache that is not a :class:`TitansCache`.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        cache = _one_cache(cache, past_key_values)
        tokens = input_ids if inputs_embeds is None else inputs_embeds
        _check_attention_mask(attention_mask, tokens.shape[0], tokens.shape[1],
                              0 if cache is None else cache.get_seq_length())
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_hidden_states = bool(output_hidden_states if output_hidden_states is not None
                                    else self.config.output_hidden_states)
        return_dict = self.config.return_dict if return_dict is None else return_dict
        if cache is None and use_cache:
            cache = TitansCache()
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        hidden = [x] if output_hidden_states else None
        for i, block in enumerate(self.layers):
            state = None if cache is None else cache.get_state(i)
            x, state = block(x, state)
            if cache is not None:
                cache.set_state(i, state)
            if hidden is not None:
                hidden.append(x)
        if cache is not None:
            cache.seen_tokens += x.shape[1]
        out = BaseModelOutputWithPast(last_hidden_state=self.norm(x), **{CACHE_KWARG: cache},
                                      hidden_states=None if hidden is None else tuple(hidden))
        return out if return_dict else out.to_tuple()


class TitansForCausalLM(TitansPreTrainedModel, GenerationMixin):
    """:class:`TitansModel` with a language-model head; ``generate`` decodes with a :class:`TitansCache`.

    Greedy decoding and sampling are supported; beam search and assisted decoding are not (the blocks'
    states cannot be reordered or rolled back). Padding is not supported: ``attention_mask`` must be
    all ones. The cache is passed as ``cache`` or ``past_key_values`` on every transformers release
    (see :mod:`titanmem.models.hf_compat`).
    """

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _supported_generation_modes = [GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE]

    def __init__(self, config: TitansConfig) -> None:
        super().__init__(config)
        self.model = TitansModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # generate must not build a DynamicCache: the first forward creates the TitansCache.
        return False

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: TitansCache | None = None,
        use_cache: bool | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        logits_to_keep: int = 0,
        past_key_values: TitansCache | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """``input_ids [B, T]`` -> ``logits [B, T, V]`` (the last ``logits_to_keep`` positions if > 0).

        ``cache``/``past_key_values`` and ``attention_mask`` as in :meth:`TitansModel.forward`.
        ``labels [B, T]`` (``-100`` = ignored) give ``loss``, the cross-entropy of position t's logits
        against the label at t + 1. ``kwargs`` may hold ``num_items_in_batch`` (see
        :func:`causal_lm_loss`); anything else raises ``TypeError``.
        """
        num_items = kwargs.pop("num_items_in_batch", None)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
        if output_attentions:
            raise ValueError("output_attentions=True is not supported: the blocks do not expose attention weights")
        if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be an int >= 0, got {logits_to_keep!r}")
        return_dict = self.config.return_dict if return_dict is None else return_dict
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                         output_hidden_states=output_hidden_states, return_dict=True)
        hidden = out.last_hidden_state
        logits = self.lm_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        loss = None
        if labels is not None:
            if logits_to_keep:
                raise ValueError("labels need the logits of every position: pass logits_to_keep=0")
            loss = causal_lm_loss(logits, labels, num_items)
        result = CausalLMOutputWithPast(loss=loss, logits=logits, **{CACHE_KWARG: out.get(CACHE_KWARG)},
                                        hidden_states=out.hidden_states)
        return result if return_dict else result.to_tuple()

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: TitansCache | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | None = None,
        past_key_values: TitansCache | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The inputs of the next forward in ``generate``: only the tokens the cache has not seen.

        The sequence so far is ``inputs_embeds`` (a prompt given as embeddings, if any) followed by
        ``input_ids``; without a cache every step reads it all again. The cache arrives under either
        name and is passed on under the installed transformers' name. Other ``kwargs`` of the
        generation loop (``next_sequence_length``, ``is_first_iteration``, ...) are not needed: the
        cache itself counts the tokens it has seen.
        """
        cache = _one_cache(cache, past_key_values)
        seen = 0 if cache is None else cache.get_seq_length()
        inputs: dict[str, Any] = {CACHE_KWARG: cache, "use_cache": use_cache, "attention_mask": attention_mask}
        prompt = 0 if inputs_embeds is None else inputs_embeds.shape[1]
        if seen < prompt:
            embeds = self.get_input_embeddings()(input_ids).to(inputs_embeds.dtype)
            inputs["inputs_embeds"] = torch.cat((inputs_embeds[:, seen:], embeds), dim=1)
        else:
            inputs["input_ids"] = input_ids[:, seen - prompt :]
        if logits_to_keep is not None:
            inputs["logits_to_keep"] = logits_to_keep
        for key in ("output_hidden_states", "output_attentions"):
            if kwargs.get(key) is not None:
                inputs[key] = kwargs[key]
        return inputs

    def generate(self, inputs: torch.Tensor | None = None, generation_config: Any = None, **kwargs: Any) -> Any:
        """``GenerationMixin.generate`` with two Titans-specific rules applied first.

        - A cache given as ``cache`` or ``past_key_values`` is passed on under the installed
          transformers' name, so both spellings work on every release without a deprecation warning.
        - Without an ``attention_mask``, every prompt token is real: an all-ones mask is passed. (Left
          alone, transformers infers a mask with zeros wherever the prompt happens to contain
          ``pad_token_id``, and the model, which does not support padding, would refuse it.)

        Raises:
            ValueError: an ``attention_mask`` not of the prompt's shape ``[B, T]`` or with zeros, two
                different caches, or a generation mode other than greedy search and sampling.
        """
        if kwargs.get("cache") is not None or kwargs.get("past_key_values") is not None:
            kwargs[CACHE_KWARG] = _one_cache(kwargs.pop("cache", None), kwargs.pop("past_key_values", None))
        prompt = kwargs.get("input_ids") if inputs is None else inputs
        mask = kwargs.get("attention_mask")
        if isinstance(prompt, torch.Tensor) and prompt.ndim == 2 and not prompt.is_floating_point():
            if mask is None:
                kwargs["attention_mask"] = torch.ones_like(prompt)
            # Checked here too: transformers 5.23-5.24 rebuild the mask before the forward sees it,
            # so a mask of another shape would pass silently.
            elif isinstance(mask, torch.Tensor) and tuple(mask.shape) != tuple(prompt.shape):
                raise ValueError(f"attention_mask must have the shape of input_ids {tuple(prompt.shape)}, "
                                 f"got {tuple(mask.shape)}")
        return super().generate(inputs, generation_config, **kwargs)


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> tuple[
        torch.Tensor, str]:
    """The loss of ``logits [B, L]`` against ``labels`` and the problem type it used, as transformers decides it.

    ``problem_type`` None is inferred: one label is regression (``labels [B]`` floats, mean squared
    error), integer labels ``[B]`` in ``[0, L)`` are single-label classification (cross-entropy), else
    multi-label (``labels [B, L]`` of 0/1, binary cross-entropy with logits). Computed in at least
    float32.

    Raises:
        ValueError: an unknown ``problem_type``, or labels whose shape does not fit it.
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    num_labels = logits.shape[-1]
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif not labels.is_floating_point():
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    labels = labels.to(logits.device)
    if problem_type == "regression":
        if labels.numel() != logits.shape[0] * num_labels:
            raise ValueError(f"labels must have {logits.shape[0] * num_labels} values for regression, got shape "
                             f"{tuple(labels.shape)}")
        return F.mse_loss(logits.reshape(-1), labels.reshape(-1).to(logits.dtype)), problem_type
    if problem_type == "single_label_classification":
        if labels.shape != logits.shape[:1] or labels.is_floating_point():
            raise ValueError(f"labels must be integer class ids of shape {tuple(logits.shape[:1])}, got "
                             f"{labels.dtype} of shape {tuple(labels.shape)}")
        return F.cross_entropy(logits, labels), problem_type
    if problem_type == "multi_label_classification":
        if labels.shape != logits.shape:
            raise ValueError(f"labels must have the shape of the logits {tuple(logits.shape)} for multi-label "
                             f"classification, got {tuple(labels.shape)}")
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype)), problem_type
    raise ValueError("problem_type must be None, 'regression', 'single_label_classification' or "
                     f"'multi_label_classification', got {problem_type!r}")


class TitansForSequenceClassification(TitansPreTrainedModel):
    """:class:`TitansModel` with a linear head over one pooled hidden state (HF's sequence-classification form).

    The head ``score`` maps the pooled state ``[B, C]`` to ``config.num_labels`` logits. Pooling is
    ``config.classifier_pooling``: ``"last"`` (default) reads the final token, the only position of
    a causal model that has seen the whole sequence (as transformers' causal-LM classifiers do); with
    a cache that is the last token of the whole sequence so far, so feeding a sequence in pieces
    gives the logits of one call. ``"mean"`` averages the tokens of this call only. Padding is not
    supported (``attention_mask`` must be all ones): batch sequences of one length. A causal-LM
    checkpoint loads with ``from_pretrained(folder, num_labels=...)``: the backbone's weights are
    shared (``base_model_prefix = "model"``), the head starts from the init.
    """

    def __init__(self, config: TitansConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = TitansModel(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: TitansCache | None = None,
        use_cache: bool | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        output_hidden_states: bool | None = None,
        past_key_values: TitansCache | None = None,
    ) -> SequenceClassifierOutputWithPast | tuple:
        """``input_ids [B, T]`` -> ``logits [B, L]``; with ``labels`` also ``loss`` (see
        :func:`sequence_classification_loss`; ``config.problem_type`` is set on first use, as
        transformers does). ``cache``/``past_key_values`` and ``attention_mask`` as in
        :meth:`TitansModel.forward`.

        Raises:
            ValueError: an empty sequence (``T = 0``: nothing to pool), or what :meth:`TitansModel.forward`
                and :func:`sequence_classification_loss` raise.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, cache=cache,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds, use_cache=use_cache,
                         output_hidden_states=output_hidden_states, return_dict=True)
        hidden = out.last_hidden_state
        if hidden.shape[1] == 0:
            raise ValueError("input_ids must hold at least one token per sequence to classify, got T = 0")
        pooled = hidden[:, -1] if self.config.classifier_pooling == "last" else hidden.mean(dim=1)
        logits = self.score(pooled)
        loss = None
        if labels is not None:
            loss, problem_type = sequence_classification_loss(logits, labels, self.config.problem_type)
            self.config.problem_type = problem_type
        result = SequenceClassifierOutputWithPast(loss=loss, logits=logits, **{CACHE_KWARG: out.get(CACHE_KWARG)},
                                                  hidden_states=out.hidden_states)
        return result if return_dict else result.to_tuple()
