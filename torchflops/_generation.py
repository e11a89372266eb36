"""What autoregressive generation costs: the prefill, each decode step with its KV cache, the total,
and the bytes the cache holds (transformers decoder models).

Every figure comes from ``count`` passes: the prefill over the prompt, and decode steps of one
token against a cache the model's own cache class (``DynamicCache(config=...)``, as ``generate``
builds it) fills with stand-in tensors. A decode step's cost is affine in the number of tokens a
layer attends to; a sliding-window layer stops growing once its cache is full, so ``step(c)`` is
piecewise affine in the context ``c``, with a break where each window fills. Two counted steps per
piece give it exactly, and the sum over thousands of steps is an arithmetic series.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ._counts import Counts, SUMMED

__all__ = ["Generation", "generation"]

_HUGE_CONTEXT = 1 << 40     # a meta cache this long shows where each layer's window caps it


@dataclass(frozen=True)
class _Layout:
    """The shapes and dtypes one cache layer's keys and values have (the sequence dimension is -2)."""

    key: tuple[int, ...]
    key_dtype: torch.dtype
    value: tuple[int, ...]
    value_dtype: torch.dtype

    def tensors(self, context: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        make = torch.empty if device.type == "meta" else torch.zeros
        return (make(*self.key[:-2], context, self.key[-1], dtype=self.key_dtype, device=device),
                make(*self.value[:-2], context, self.value[-1], dtype=self.value_dtype, device=device))


def _states(layers: tuple[Optional[_Layout], ...], context: int, device: torch.device) -> list[torch.Tensor]:
    """Keys and values of ``context`` tokens for every layer that caches any, in layer order."""
    return [t for layout in layers if layout is not None for t in layout.tensors(context, device)]


@dataclass(frozen=True)
class _Piece:
    """``step(c) = at_start + (c - start) * slope`` for ``start <= c`` up to the next piece's start."""

    start: int
    at_start: Counts
    slope: Counts

    def at(self, context: int) -> Counts:
        return _affine(self.at_start, self.slope, context - self.start)

    def summed(self, first: int, last: int) -> Counts:
        """``step(first) + ... + step(last)``, both within this piece."""
        n = last - first + 1
        offsets = (last - self.start) * (last - self.start + 1) // 2 \
            - (first - self.start - 1) * (first - self.start) // 2
        return Counts(**{name: n * getattr(self.at_start, name) + offsets * getattr(self.slope, name)
                         for name in SUMMED})


def _affine(base: Counts, slope: Counts, times: int) -> Counts:
    return Counts(**{name: getattr(base, name) + times * getattr(slope, name) for name in SUMMED})


def _difference(later: Counts, earlier: Counts) -> Counts:
    return Counts(**{name: getattr(later, name) - getattr(earlier, name) for name in SUMMED})


@dataclass(frozen=True)
class Generation:
    """The cost of ``model.generate(max_new_tokens=new_tokens)`` on ``prompt_tokens`` tokens.

    ``prefill``: the pass over the prompt, which produces the first token. ``step(c)``: one decode
    step of one token per sequence whose KV cache holds ``c`` tokens. ``total``: the prefill plus
    the ``new_tokens - 1`` decode steps at contexts ``prompt_tokens`` ... ``prompt_tokens +
    new_tokens - 2`` (``params`` is the model's, counted once). Counts follow ``count``'s conventions:
    causal masks do not halve attention MACs.
    """

    prompt_tokens: int
    new_tokens: int
    batch: int
    prefill: Counts
    total: Counts
    _pieces: tuple[_Piece, ...] = field(repr=False)
    _config: Any = field(repr=False)
    _layers: tuple[Optional[_Layout], ...] = field(repr=False)

    def step(self, context: int) -> Counts:
        """``Counts`` of one decode step whose KV cache holds ``context`` tokens."""
        _check_positive(context, "context")
        return _piece(self._pieces, context).at(context)

    def step_formula(self, field: str = "flops") -> str:
        """The closed form of ``step(c)`` for one field, piece by piece, as text."""
        if field not in SUMMED and field not in ("flops", "backward_flops"):
            raise ValueError(f"unknown field {field!r}; expected one of {', '.join(Counts().as_dict())}")
        parts = []
        for index, piece in enumerate(self._pieces):
            intercept = getattr(piece.at_start, field) - piece.start * getattr(piece.slope, field)
            upper = self._pieces[index + 1].start if index + 1 < len(self._pieces) else None
            where = f"{piece.start} <= c" + (f" <= {upper}" if upper is not None else "")
            parts.append(f"{intercept:,} + {getattr(piece.slope, field):,} * c  ({where})")
        return "; ".join(parts)

    def kv_cache_layers(self, context: int) -> tuple[int, ...]:
        """Bytes of each layer's cached keys plus values when the cache holds ``context`` tokens."""
        _check_positive(context, "context")
        cache = _filled_cache(self._config, self._layers, _states(self._layers, context, torch.device("meta")))
        return tuple(0 if layout is None else _layer_bytes(layer)
                     for layout, layer in zip(self._layers, cache.layers))

    def kv_cache_bytes(self, context: int) -> int:
        """Bytes the KV cache holds at ``context`` tokens: its key and value tensors, every layer."""
        return sum(self.kv_cache_layers(context))

    def to_dict(self) -> dict[str, Any]:
        """Exact integers: the prefill, the step's pieces (``step(c) = at_start + (c - start) * slope``),
        the total, and the KV cache when the last token is produced, in total and per layer."""
        end = self.prompt_tokens + self.new_tokens - 1
        return {"prompt_tokens": self.prompt_tokens, "new_tokens": self.new_tokens, "batch": self.batch,
                "prefill": self.prefill.as_dict(),
                "step": [{"start": p.start, "at_start": p.at_start.as_dict(), "slope": p.slope.as_dict()}
                         for p in self._pieces],
                "total": self.total.as_dict(), "kv_cache_tokens": end,
                "kv_cache_bytes": self.kv_cache_bytes(end), "kv_cache_layers": list(self.kv_cache_layers(end))}

    def summary(self) -> str:
        """A few lines: prefill, the step's closed form, the total and the KV cache at the end."""
        end = self.prompt_tokens + self.new_tokens - 1
        lines = [
            f"generation: batch {self.batch}, prompt {self.prompt_tokens:,} tokens, {self.new_tokens:,} new tokens",
            f"  prefill FLOPs: {self.prefill.flops:,}",
            f"  decode step FLOPs at context c: {self.step_formula()}",
            f"  total FLOPs: {self.total.flops:,}",
            f"  KV cache at {end:,} tokens: {self.kv_cache_bytes(end):,} bytes",
        ]
        return "\n".join(lines)


def _piece(pieces: tuple[_Piece, ...], context: int) -> _Piece:
    return next(p for p in reversed(pieces) if p.start <= context)


def _layer_bytes(layer: Any) -> int:
    return sum(t.nbytes for t in (layer.keys, layer.values) if t is not None)


def _check_positive(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


# -- the model's cache ---------------------------------------------------------------------------
def _cache_keyword(model: nn.Module) -> str:
    """``cache`` (transformers 5) or ``past_key_values`` (4.x): how ``forward`` takes the KV cache."""
    parameters = inspect.signature(model.forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise TypeError(f"{type(model).__name__}.forward takes no KV cache (no 'cache' or 'past_key_values' "
                    "argument): generation() counts transformers decoder models")


def _new_cache(config: Any) -> Any:
    """An empty cache of the layer types ``generate`` gives this config (sliding windows included)."""
    from transformers import DynamicCache

    return DynamicCache(config=config.get_text_config(decoder=True))


def _filled_cache(config: Any, layers: tuple[Optional[_Layout], ...], states: Sequence[torch.Tensor]) -> Any:
    """The cache after ``states`` (from ``_states``): each layer is given its keys and values and keeps
    what its own type keeps (a sliding-window layer its window's worth)."""
    cache = _new_cache(config)
    tensors = iter(states)
    for index, layout in enumerate(layers):
        if layout is not None:
            cache.update(next(tensors), next(tensors), index)
    return cache


class _Pass(nn.Module):
    """One forward of ``model`` with a KV cache: empty (the prefill) or filled with ``states``.

    It wraps the model so that ``count`` makes its stand-ins for the cache tensors too, fresh on each
    attempt (meta, then fake); ``layouts`` receives the layout of the cache the forward leaves.
    """

    def __init__(self, model: nn.Module, keyword: str, extra: dict[str, Any],
                 layers: tuple[Optional[_Layout], ...], layouts: list) -> None:
        super().__init__()
        self.model = model
        self.keyword = keyword
        self.extra = extra
        self.layers = layers
        # a callable, not the list: count() puts back containers a forward fills in place
        self.report = layouts.extend

    def forward(self, input_ids: torch.Tensor, *states: torch.Tensor) -> Any:
        cache = _filled_cache(self.model.config, self.layers, states)
        output = self.model(input_ids=input_ids, use_cache=True, **{self.keyword: cache}, **self.extra)
        self.report([None if getattr(layer, "keys", None) is None or layer.keys.numel() == 0 else
                     _Layout(tuple(layer.keys.shape), layer.keys.dtype,
                             tuple(layer.values.shape), layer.values.dtype)
                     for layer in cache.layers])
        return output


@dataclass(frozen=True)
class _Counter:
    """Counts the prefill and decode steps of one model, batch and device."""

    model: nn.Module
    keyword: str
    extra: dict[str, Any]
    batch: int
    device: torch.device

    def _run(self, tokens: int, layers: tuple[Optional[_Layout], ...] = (), context: int = 0
             ) -> tuple[Counts, tuple[Optional[_Layout], ...]]:
        from ._api import count

        layouts: list = []
        ids = torch.zeros(self.batch, tokens, dtype=torch.long, device=self.device)
        prof = count(_Pass(self.model, self.keyword, self.extra, layers, layouts), ids,
                     *_states(layers, context, self.device), device=self.device)
        return prof.total, tuple(layouts)

    def prefill(self, tokens: int) -> tuple[Counts, tuple[Optional[_Layout], ...]]:
        return self._run(tokens)

    def step(self, layers: tuple[Optional[_Layout], ...], context: int) -> Counts:
        return self._run(1, layers, context)[0]


def _caps(config: Any, layers: tuple[Optional[_Layout], ...]) -> list[int]:
    """The context lengths at which a layer's cache stops growing (its window fills), ascending."""
    cache = _filled_cache(config, layers, _states(layers, _HUGE_CONTEXT, torch.device("meta")))
    held = {layer.keys.shape[-2] for layout, layer in zip(layers, cache.layers) if layout is not None}
    return sorted(n for n in held if n < _HUGE_CONTEXT)


def generation(model: nn.Module, prompt_tokens: int, new_tokens: int, *, batch: int = 1,
               device: Union[str, torch.device] = "meta", kwargs: Optional[Mapping[str, Any]] = None
               ) -> Generation:
    """Count ``model.generate(ids, max_new_tokens=new_tokens)`` on ``batch`` prompts of
    ``prompt_tokens`` tokens (greedy, with the KV cache): the prefill produces the first new token,
    then ``new_tokens - 1`` decode steps of one token each.

    Shape-only by default and fast for any length: a few counted passes give every step's cost in
    closed form. ``kwargs`` are extra keyword inputs of every forward call.
    """
    from ._api import _check_device, _check_model, _unwrapped

    _check_model(model)
    model = _unwrapped(model)
    _check_positive(prompt_tokens, "prompt_tokens")
    _check_positive(new_tokens, "new_tokens")
    _check_positive(batch, "batch")
    device = _check_device(device)
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a dict of keyword inputs, got {type(kwargs).__name__}")
    if getattr(model, "config", None) is None or not hasattr(model.config, "get_text_config"):
        raise TypeError(f"generation() counts transformers models (with a .config); got {type(model).__name__}")
    if getattr(model.config, "is_encoder_decoder", False):
        raise TypeError(f"generation() counts decoder-only models; {type(model).__name__} is an encoder-decoder")
    keyword = _cache_keyword(model)
    extra = dict(kwargs or {})
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        # as generate() does: the prefill computes the logits of its last position only
        extra.setdefault("logits_to_keep", 1)
    counter = _Counter(model, keyword, extra, batch, device)

    prefill, layers = counter.prefill(prompt_tokens)
    if not any(layout is not None for layout in layers):
        raise TypeError(f"{type(model).__name__} left no keys or values in its cache; generation() counts "
                        "decoder models with a key/value cache")
    pieces = []
    for start in sorted({1, *(cap for cap in _caps(model.config, layers) if cap > 1)}):
        at_start = counter.step(layers, start)
        pieces.append(_Piece(start, at_start, _difference(counter.step(layers, start + 1), at_start)))
    pieces = tuple(pieces)

    total = prefill
    first, last = prompt_tokens, prompt_tokens + new_tokens - 2
    for index, piece in enumerate(pieces):
        upper = pieces[index + 1].start - 1 if index + 1 < len(pieces) else last
        low, high = max(first, piece.start), min(last, upper)
        if low <= high:
            total = total + piece.summed(low, high)
    total = total.replace(params=prefill.params)
    return Generation(prompt_tokens, new_tokens, batch, prefill, total, pieces, model.config, layers)
