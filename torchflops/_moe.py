"""Mixture-of-experts blocks: counted from shapes, whatever the routing picks.

A sparse block sends every token to exactly ``top_k`` of its equal-sized experts (no token is
dropped in the architectures covered here), so what the experts cost depends on the number of
tokens alone, never on which experts the router picked. That makes the block countable without
running its routing, which reads tensor values (``nonzero``, ``where``, a loop over the experts
that were hit) and therefore cannot run shape-only.

``MoE`` describes such a module in one of two layouts:

- a block whose ``experts`` attribute is a list of expert modules (transformers 4.x): on a
  shape-only pass its forward is replaced for the length of the pass by one that calls the
  router and the shared experts on the block's input, as the real forward does, and the first
  expert once on ``tokens x top_k`` rows, which costs what the experts cost together (each
  is called on the tokens routed to it); every call is recorded as usual;
- a module holding every expert's weights stacked on a leading expert dimension
  (``experts=None``; transformers 5's experts modules under every ``experts_implementation``):
  a formula counts ``tokens x top_k`` passes through one slice of each stacked weight, and on a
  shape-only pass the module returns a stand-in shaped like its input instead of running.

``resolve`` also recognises transformers' own MoE classes, so they need no ``formulas=``,
among them a third layout, ScatterMoE-style blocks (JetMoe; 4.x's GraniteMoe family): the
router sorts the routed rows by expert and the experts modules are told the group sizes as
Python ints. There the block's own forward runs and, on a shape-only pass, only the router is
replaced, by one that puts every routed row in the first expert's group.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union, cast

import torch
from torch import nn

from ._call import Call, TensorInfo
from ._counts import Counts
from ._formulas._dense import dense, trainable

__all__ = ["MoE", "resolve", "StandIn"]

TopK = Union[int, str, Callable[[nn.Module, Optional[Call]], int]]
# A stand-in forward: called as ``standin(module, *args, **kwargs)`` in place of ``module.forward``.
StandIn = Callable[..., Any]


@dataclass(frozen=True)
class MoE:
    """How torchflops reads a sparse mixture-of-experts module.

    ``top_k``: experts per token, an int or the name of an attribute of the module (or of its
    ``config``) that holds it. ``experts``: the attribute holding the list of equal-sized
    experts; ``None`` when the module itself holds every expert's weights stacked on a leading
    expert dimension. ``router`` and ``shared``: attributes of the modules every token goes
    through (the router, shared experts and their gates), called on the block's input.
    ``router_logits``: the block returns ``(hidden_states, router_logits)``, the router's output.
    For stacked weights, ``num_experts`` (int or attribute; default: the leading dimension of the
    3-D weights) and ``transposed`` (weights stored ``(in, out)``: True, or the names of those
    that are; default: the module's ``is_transposed``, else ``(out, in)`` as ``nn.Linear``).
    """

    top_k: TopK
    experts: Optional[str] = "experts"
    router: Optional[str] = None
    shared: tuple[str, ...] = ()
    router_logits: bool = False
    num_experts: Union[int, str, tuple[str, ...], None] = None
    transposed: Union[bool, tuple[str, ...], None] = None

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, str)) and not callable(self.top_k):
            raise TypeError(f"MoE top_k must be an int or an attribute name, got {self.top_k!r}")
        if isinstance(self.top_k, int) and self.top_k < 1:
            raise ValueError(f"MoE top_k must be at least 1, got {self.top_k}")
        if isinstance(self.shared, str):
            object.__setattr__(self, "shared", (self.shared,))

    # -- stacked experts: the formula ---------------------------------------------------------
    def __call__(self, module: nn.Module, call: Call) -> Counts:
        """Each (token, chosen expert) pair goes once through one expert's slice of every
        stacked weight, and adds one slice of every stacked bias."""
        if self.experts is not None:
            raise TypeError(f"{type(module).__name__}: an MoE block with an expert list is counted "
                            "through its experts' calls, not as one formula")
        x = _hidden(call)
        pairs = x.numel // x.shape[-1] * self._top_k(module, call)
        total = Counts()
        upstream = x.needs_grad      # the gradient reaching each matrix's input
        for _, weight, (inputs, outputs) in self._matrices(module):
            total += dense(pairs * outputs, inputs, biases=0, input_grad=upstream,
                           weight_grad=trainable(weight))
            upstream = upstream or trainable(weight)
        biases = sum(p.shape[1] for p in self._biases(module))
        return total.replace(adds=total.adds + pairs * biases)

    def _biases(self, module: nn.Module) -> list[nn.Parameter]:
        """Stacked biases: one vector per expert, ``(experts, outputs)``."""
        experts = self._experts_count(module)
        return [p for p in module.parameters() if p.dim() == 2 and p.shape[0] == experts]

    def _matrices(self, module: nn.Module) -> list[tuple[str, nn.Parameter, tuple[int, int]]]:
        """Each stacked weight with one expert's (inputs, outputs)."""
        experts = self._experts_count(module)
        found = []
        for name, weight in module.named_parameters():
            if weight.dim() < 2 or weight.dim() == 2 and weight.shape[0] == experts:
                continue    # a bias per expert, or elementwise weights (a norm after the experts)
            if weight.dim() == 3 and weight.shape[0] == experts:
                a, b = weight.shape[1], weight.shape[2]
            elif weight.dim() == 2 and weight.shape[0] % experts == 0:     # (experts x rows, columns)
                a, b = weight.shape[0] // experts, weight.shape[1]
            else:
                raise ValueError(f"{type(module).__name__}.{name} of shape {tuple(weight.shape)} is not stacked "
                                 f"per expert ({experts} experts); torchflops cannot read its routing")
            found.append((name, weight, (a, b) if self._is_transposed(module, name) else (b, a)))
        if not found:
            raise ValueError(f"{type(module).__name__} holds no stacked expert weights; torchflops cannot "
                             "count its experts")
        return found

    def _is_transposed(self, module: nn.Module, name: str) -> bool:
        if isinstance(self.transposed, tuple):
            return name.rsplit(".", 1)[-1] in self.transposed
        if self.transposed is not None:
            return self.transposed
        return bool(getattr(module, "is_transposed", False))

    def _experts_count(self, module: nn.Module) -> int:
        if self.num_experts is None:
            stacks = [p.shape[0] for name, p in module.named_parameters() if p.dim() == 3]
            if not stacks:
                raise ValueError(f"{type(module).__name__} has no 3-D expert weights: give MoE(num_experts=...)")
            return stacks[0]
        return _read(module, self.num_experts, "num_experts")

    def _top_k(self, module: nn.Module, call: Optional[Call]) -> int:
        if callable(self.top_k):
            return self.top_k(module, call)
        return _read(module, self.top_k, "top_k")

    # -- shape-only passes --------------------------------------------------------------------
    def standin(self) -> StandIn:
        """The forward a shape-only pass runs instead of the module's own. Its output is shaped like
        the module's input, as the output of an experts layer is."""
        return _stacked_standin if self.experts is None else self._block_standin

    def formula(self) -> Optional[MoE]:
        """What counts the module as one formula: this description for stacked weights; ``None``
        for a block whose parts are counted."""
        return self if self.experts is None else None

    def standins(self, module: nn.Module) -> list[tuple[nn.Module, StandIn]]:
        """The modules whose forward a shape-only pass replaces, each with its stand-in."""
        return [(module, functools.partial(self.standin(), module))]

    def fits(self, module: nn.Module) -> bool:
        """Whether the module is laid out as this description reads it (transformers 5 keeps
        4.x's block names around modules laid out differently)."""
        return self.experts is None or isinstance(getattr(module, self.experts, None), nn.ModuleList)

    def check(self, module: nn.Module) -> None:
        """Refuse, before the pass, a module whose routing this description cannot read."""
        label = type(module).__name__
        if self.experts is None:
            self._matrices(module)
            return
        experts = getattr(module, self.experts, None)
        if not isinstance(experts, (nn.ModuleList, nn.Sequential)) or len(experts) == 0:
            raise ValueError(f"{label}.{self.experts} is {type(experts).__name__}, not a list of expert "
                             "modules; torchflops cannot read this block's routing")
        shapes = {tuple((n, tuple(p.shape)) for n, p in e.named_parameters()) for e in experts}
        if len(shapes) > 1:
            raise ValueError(f"{label}'s experts differ in size; the cost of its routing depends on which "
                             "experts it picks, so torchflops cannot count it from shapes")
        top_k = self._top_k(module, None) if not callable(self.top_k) else 1
        if top_k > len(experts):
            raise ValueError(f"{label} routes each token to top_k={top_k} experts but has {len(experts)}")
        for name in (self.router, *self.shared):
            # a shared module set to None is one this block was built without (Ernie 4.5 with no
            # shared experts); an attribute that is missing or not a module is a wrong description
            found = getattr(module, name, _MISSING) if name is not None else None
            if found is _MISSING or found is not None and not isinstance(found, nn.Module):
                raise ValueError(f"{label} has no submodule {name!r}")

    def _block_standin(self, module: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        logits = getattr(module, self.router)(hidden_states) if self.router else None
        for name in self.shared:
            if getattr(module, name) is not None:
                getattr(module, name)(hidden_states)
        experts = getattr(module, self.experts)
        width = hidden_states.shape[-1]
        routed = hidden_states.reshape(-1, width).repeat(self._top_k(module, None), 1)
        experts[0](routed)
        out = _like(hidden_states, any(p.requires_grad for p in module.parameters()))
        if self.router_logits:
            return out, logits[0] if isinstance(logits, tuple) else logits
        return out

    # -- active parameters ---------------------------------------------------------------------
    def inactive(self, module: nn.Module, call: Call) -> int:
        """Parameters of the experts one token does not use."""
        if self.experts is None:
            experts = self._experts_count(module)
            stacked = sum(p.numel() for _, p, _ in self._matrices(module))
            stacked += sum(p.numel() for p in self._biases(module))
            return stacked // experts * (experts - self._top_k(module, call))
        experts = getattr(module, self.experts)
        one = sum(p.numel() for p in experts[0].parameters())
        return one * (len(experts) - self._top_k(module, call))


_MISSING = object()


@dataclass(frozen=True)
class _SortedRouting(MoE):
    """A ScatterMoE-style block (transformers' JetMoe, for its MLP and its attention experts, and
    4.x's GraniteMoe, GraniteMoeShared and GraniteMoeHybrid): the router at ``router`` (a path)
    sorts the ``tokens x top_k`` routed rows by expert, and the modules at ``stacked`` (paths),
    each holding every expert's weight stacked ``(experts, out, in)``, run each expert on its
    group, told the group sizes as Python ints read from the routing's values. The block's own
    forward runs; on a shape-only pass the router returns the same routing with every row in the
    first expert's group, which costs what any grouping does. ``top_k`` is read from the router."""

    experts: Optional[str] = None
    router: str = "router"
    stacked: tuple[str, ...] = ()

    def formula(self) -> None:
        return None

    def fits(self, module: nn.Module) -> bool:
        try:
            module.get_submodule(f"{self.router}.layer")
            self._weights(module)
        except AttributeError:
            return False
        return True

    def standins(self, module: nn.Module) -> list[tuple[nn.Module, StandIn]]:
        router = module.get_submodule(self.router)
        return [(router, functools.partial(_first_group_routing, router))]

    def check(self, module: nn.Module) -> None:
        label = type(module).__name__
        try:
            layer = module.get_submodule(f"{self.router}.layer")
            weights = self._weights(module)
        except AttributeError as missing:
            raise ValueError(f"{label} is not laid out as torchflops reads this block's routing: {missing}") from None
        experts = self._experts_count(module)
        if not isinstance(layer, nn.Linear) or any(w.dim() != 3 or w.shape[0] != experts for w in weights):
            raise ValueError(f"{label}'s router and experts are not laid out as torchflops reads this "
                             "block's routing")
        if self._top_k(module, None) > experts:
            raise ValueError(f"{label} routes each token to top_k={self._top_k(module, None)} experts "
                             f"but has {experts}")

    def _weights(self, module: nn.Module) -> list[torch.Tensor]:
        found = [getattr(module.get_submodule(path), "weight", None) for path in self.stacked]
        if not all(isinstance(w, torch.Tensor) for w in found):
            raise AttributeError(f"no stacked expert weight at each of {', '.join(self.stacked)}")
        return cast("list[torch.Tensor]", found)

    def _experts_count(self, module: nn.Module) -> int:
        return _read(module.get_submodule(self.router), "num_experts", "num_experts")

    def _top_k(self, module: nn.Module, call: Optional[Call]) -> int:
        return _read(module.get_submodule(self.router), cast(str, self.top_k), "top_k")

    def inactive(self, module: nn.Module, call: Call) -> int:
        unused = self._experts_count(module) - self._top_k(module, call)
        return sum(w.numel() // w.shape[0] * unused for w in self._weights(module))


def _first_group_routing(router: nn.Module, hidden_states: torch.Tensor) -> tuple[Any, ...]:
    """A JetMoe-style router's output, ``(order, token of each row, gate of each row, group sizes,
    logits)``, with every routed row in the first group. The gates come from the logits, so the
    backward reaches the router as a real pass's does."""
    top_k = _read(router, "top_k", "top_k")
    logits = router.get_submodule("layer")(hidden_states).float()
    top_logits, _ = logits.topk(top_k, dim=1)
    gates = torch.softmax(top_logits, dim=1).type_as(hidden_states).flatten()
    order = torch.arange(gates.shape[0], device=hidden_states.device)
    sizes = [gates.shape[0]] + [0] * (_read(router, "num_experts", "num_experts") - 1)
    return order, order.div(top_k, rounding_mode="trunc"), gates, sizes, logits


def _read(module: nn.Module, value: Union[int, str, tuple[str, ...]], what: str) -> int:
    """An int, or the first of the named attributes the module (or its ``config``) holds as an int."""
    if isinstance(value, int):
        return value
    for name in (value,) if isinstance(value, str) else value:
        for owner in (module, getattr(module, "config", None)):
            found = getattr(owner, name, None) if owner is not None else None
            if isinstance(found, int) and not isinstance(found, bool):
                return found
    raise ValueError(f"{type(module).__name__} has no integer attribute {value!r} (MoE {what}); torchflops "
                     "cannot read its routing")


def _hidden(call: Call) -> TensorInfo:
    tensors = call.input_tensors()
    if not tensors or len(tensors[0].shape) < 2:
        raise ValueError("an experts module is called with the token states (tokens x hidden) first")
    return tensors[0]


def _like(x: torch.Tensor, trains: bool) -> torch.Tensor:
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    return out.requires_grad_(bool(torch.is_grad_enabled() and (trains or x.requires_grad)))


def _stacked_standin(module: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return _like(hidden_states, any(p.requires_grad for p in module.parameters()))


# -- transformers' own MoE classes ----------------------------------------------------------------
def _routing_width(*places: tuple[int, str]) -> Callable[[nn.Module, Optional[Call]], int]:
    """top_k read from the routing indices (tokens x top_k) the experts module is called with, at
    the first of ``places`` (position, keyword) the call fills."""
    def top_k(module: nn.Module, call: Optional[Call]) -> int:
        if call is None:
            return 1
        for position, keyword in places:
            indices = call.arg(position, keyword)
            if isinstance(indices, TensorInfo) and indices.shape:
                return indices.shape[-1]
        raise ValueError(f"{type(module).__name__} was called without routing indices; torchflops cannot "
                         "read its routing")
    return top_k


_STACKED = MoE(top_k=_routing_width((1, "top_k_index")), experts=None)

# transformers 4.x: blocks with a list of experts, and two modules with stacked weights
_TRANSFORMERS: dict[str, MoE] = {
    "mixtral.modeling_mixtral.MixtralSparseMoeBlock": MoE("top_k", router="gate", router_logits=True),
    "minimax.modeling_minimax.MiniMaxSparseMoeBlock": MoE("top_k", router="gate", router_logits=True),
    "phimoe.modeling_phimoe.PhimoeSparseMoeBlock": MoE("top_k", router="gate", router_logits=True),
    "qwen2_moe.modeling_qwen2_moe.Qwen2MoeSparseMoeBlock": MoE(
        "top_k", router="gate", shared=("shared_expert", "shared_expert_gate"), router_logits=True),
    "qwen3_next.modeling_qwen3_next.Qwen3NextSparseMoeBlock": MoE(
        "top_k", router="gate", shared=("shared_expert", "shared_expert_gate"), router_logits=True),
    "qwen3_moe.modeling_qwen3_moe.Qwen3MoeSparseMoeBlock": MoE("top_k", router="gate", router_logits=True),
    "olmoe.modeling_olmoe.OlmoeSparseMoeBlock": MoE("top_k", router="gate", router_logits=True),
    "flex_olmo.modeling_flex_olmo.FlexOlmoSparseMoeBlock": MoE("top_k", router="gate", router_logits=True),
    "jamba.modeling_jamba.JambaSparseMoeBlock": MoE("top_k", router="router", router_logits=True),
    "deepseek_v3.modeling_deepseek_v3.DeepseekV3MoE": MoE(
        "num_experts_per_tok", router="gate", shared=("shared_experts",)),
    "dots1.modeling_dots1.Dots1MoE": MoE("num_experts_per_tok", router="gate", shared=("shared_experts",)),
    "glm4_moe.modeling_glm4_moe.Glm4MoeMoE": MoE("num_experts_per_tok", router="gate", shared=("shared_experts",)),
    "ernie4_5_moe.modeling_ernie4_5_moe.Ernie4_5_MoeSparseMoeBlock": MoE(
        "top_k", router="gate", shared=("shared_experts",), router_logits=True),
    "hunyuan_v1_moe.modeling_hunyuan_v1_moe.HunYuanMoEV1Moe": MoE("top_k", router="gate", shared=("shared_mlp",)),
    "granitemoe.modeling_granitemoe.GraniteMoeMoE": _SortedRouting(
        "top_k", router="router", stacked=("input_linear", "output_linear")),
    "granitemoeshared.modeling_granitemoeshared.GraniteMoeSharedMoE": _SortedRouting(
        "top_k", router="router", stacked=("input_linear", "output_linear")),
    "granitemoehybrid.modeling_granitemoehybrid.GraniteMoeHybridMoE": _SortedRouting(
        "top_k", router="router", stacked=("input_linear", "output_linear")),
    "jetmoe.modeling_jetmoe.JetMoeMoE": _SortedRouting(
        "top_k", router="router", stacked=("input_linear", "output_linear")),
    # the attention experts' block (JetMoeMoA) is never called itself: its caller is described
    "jetmoe.modeling_jetmoe.JetMoeAttention": _SortedRouting(
        "top_k", router="experts.router", stacked=("experts.input_linear", "experts.output_linear")),
    "gpt_oss.modeling_gpt_oss.GptOssExperts": MoE(top_k=_routing_width((1, "router_indices")), experts=None,
                                                  transposed=True),
    # 4.x calls it with (x, weights, top_weights, top_experts), 5.x with (x, top_k_index, top_k_weights)
    "dbrx.modeling_dbrx.DbrxExperts": MoE(top_k=_routing_width((3, "top_experts"), (1, "top_k_index")),
                                          experts=None, num_experts=("moe_num_experts", "num_experts"),
                                          transposed=("w2",)),
}


@functools.lru_cache(maxsize=1)
def _experts_forward_code() -> Optional[object]:
    """The code of the forward transformers 5's ``use_experts_implementation`` gives every experts
    class (each dispatches on ``config._experts_implementation``)."""
    try:
        from transformers.integrations.moe import use_experts_implementation
    except ImportError:
        return None

    class Probe(nn.Module):
        def forward(self) -> None:
            return None

    return use_experts_implementation(Probe).forward.__code__


def _builtin(module: nn.Module) -> Optional[MoE]:
    cls = type(module)
    if not cls.__module__.startswith("transformers."):
        return None
    forward = getattr(cls.forward, "__code__", None)
    if forward is not None and forward is _experts_forward_code():
        return _STACKED
    for klass in cls.__mro__:     # 4.x's JetMoe picks a subclass of its attention per implementation
        spec = _TRANSFORMERS.get(f"{klass.__module__.removeprefix('transformers.models.')}.{klass.__qualname__}")
        if spec is not None:
            # transformers 5 keeps 4.x's block names around its experts modules, which are shape-static
            return spec if spec.fits(module) else None
    return None


def resolve(module: nn.Module, formula: Optional[Callable]) -> tuple[Optional[Callable], Optional[MoE]]:
    """The formula a module is counted by, and its MoE description if it is a mixture of experts.

    A block with an expert list has no formula of its own (its parts are counted); a module with
    stacked experts is counted by its description. Raises ``ValueError`` for a description that
    does not fit the module.
    """
    spec = formula if isinstance(formula, MoE) else (_builtin(module) if formula is None else None)
    if spec is None:
        return formula, None
    spec.check(module)
    return spec.formula(), spec

