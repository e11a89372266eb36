"""Formulas keyed by module type (looked up along the MRO) or by function."""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch import nn

from ._counts import Counts

__all__ = ["Formula", "Registry", "REGISTRY", "register", "Resolver"]

# A module formula is ``f(module, call) -> Counts``; a function formula is ``f(call) -> Counts``.
Formula = Callable[..., Counts]


class Registry:
    """Targets (module classes or functions) to formulas; each target registered once."""

    def __init__(self) -> None:
        self._formulas: dict[object, Formula] = {}

    def register(self, *targets: object) -> Callable[[Formula], Formula]:
        """Decorator registering one formula for several targets; a second registration is an error."""
        if not targets:
            raise TypeError("register() needs at least one module class or function")
        for target in targets:
            if not (isinstance(target, type) or callable(target)):
                raise TypeError(f"register() takes module classes or functions, got {target!r}")

        def decorate(formula: Formula) -> Formula:
            for target in targets:
                existing = self._formulas.get(target)
                if existing is not None and not _same_definition(existing, formula):
                    raise ValueError(f"a formula for {_label(target)} is already registered "
                                     f"({_label(existing)})")
            for target in targets:
                self._formulas[target] = formula
            return formula

        return decorate

    def get(self, target: object) -> Optional[Formula]:
        return self._formulas.get(target)

    def __contains__(self, target: object) -> bool:
        return target in self._formulas


REGISTRY = Registry()
register = REGISTRY.register


class Resolver:
    """The formulas one profile uses: per-call ``overrides`` first, then the global registry.

    Lookups walk the class's MRO, so subclasses inherit their base's formula; results are
    cached per class for the life of the profile.
    """

    def __init__(self, overrides: Optional[Mapping[object, Formula]] = None) -> None:
        self._overrides: dict[object, Formula] = {}
        self._op_overrides: dict[str, Formula] = {}     # "mylib::op" -> f(module, call)
        for target, formula in (overrides or {}).items():
            name = _op_name(target)
            if name is None:
                self._overrides[target] = formula
            else:
                self._op_overrides[name] = formula
        self._cache: dict[type, Optional[Formula]] = {}

    def for_module(self, module: nn.Module) -> Optional[Formula]:
        cls = type(module)
        try:
            return self._cache[cls]
        except KeyError:
            pass
        found = None
        for klass in cls.__mro__:
            found = self._overrides.get(klass) or REGISTRY.get(klass)
            if found is not None:
                break
        self._cache[cls] = found
        return found

    def for_function(self, func: object) -> Optional[Formula]:
        return self._overrides.get(func) or REGISTRY.get(func)

    def for_op(self, func: torch._ops.OpOverload) -> tuple[Optional[Formula], bool]:
        """The formula for an ATen-level operation, and whether it takes the enclosing module
        (a user's formula for an operator does: ``f(module, call)``; built-in ones ``f(call)``)."""
        packet = func.overloadpacket
        mine = self._op_overrides.get(packet._qualified_op_name)
        if mine is not None:
            return mine, True
        return REGISTRY.get(packet), False


def validate_overrides(formulas: object) -> dict[object, Formula]:
    """Check a user's ``formulas=`` mapping before anything runs."""
    if formulas is None:
        return {}
    if not isinstance(formulas, Mapping):
        raise TypeError(f"formulas= takes a dict of module class -> formula, got {type(formulas).__name__}")
    for target, formula in formulas.items():
        if isinstance(target, str) and _op_name(target) is None:
            raise TypeError(f"formulas= takes an operator by its qualified name such as 'mylib::op', "
                            f"got {target!r}")
        if not (isinstance(target, (type, str)) or callable(target)):
            raise TypeError(f"formulas= keys are module classes, functions or operators, got {target!r}")
        if not callable(formula):
            raise TypeError(f"formulas[{_label(target)}] is {formula!r}, which is not callable")
    return dict(formulas)


def _op_name(target: object) -> Optional[str]:
    """``"mylib::op"`` for an operator named by string, ``torch.ops`` packet or overload."""
    if isinstance(target, str):
        return target if "::" in target and not target.startswith("::") else None
    if isinstance(target, torch._ops.OpOverload):
        target = target.overloadpacket
    if isinstance(target, torch._ops.OpOverloadPacket):
        return target._qualified_op_name
    return None


def _same_definition(a: Formula, b: Formula) -> bool:
    """The same function defined again: its module was imported a second time (pytester's
    in-process runs drop and re-import modules), which is not a conflicting registration."""
    return (getattr(a, "__module__", None), getattr(a, "__qualname__", None)) == (
        getattr(b, "__module__", None), getattr(b, "__qualname__", None))


def _label(target: object) -> str:
    return getattr(target, "__qualname__", None) or repr(target)


