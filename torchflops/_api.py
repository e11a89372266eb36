"""``count`` (one dummy pass, shape-only by default) and ``profile`` (your own passes)."""
from __future__ import annotations

import contextlib
import inspect
import logging
import operator
import sys
import threading
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils._pytree import tree_map_only

from ._capture import NESTED, NOTE_PREFIX, Session
from ._shortcuts import iter_tensors
from ._storages import Storages
from ._registry import Resolver, validate_overrides
from ._ranks import Collective
from ._render import Profile
from ._sharded import Sharded, dtensor_standin, fsdp_states, is_dtensor

__all__ = ["count", "profile", "ShapeOnlyError"]

SizeLike = Union[Sequence[int], Sequence[Sequence[int]]]


class ShapeOnlyError(RuntimeError):
    """The model's forward depends on tensor values, so it cannot run shape-only."""

    __module__ = "torchflops"   # tracebacks name the public path


# -- argument checks (all before anything is touched) ----------------------------------------------
def _check_model(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError(f"{model.original_name} is a TorchScript module, which runs out of Python's sight: "
                        "count the eager module it was scripted or traced from")


def _compiled(model: nn.Module) -> bool:
    """Whether ``model`` is a ``torch.compile`` wrapper (whose class is loaded once one exists)."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    return eval_frame is not None and isinstance(model, eval_frame.OptimizedModule)


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile`` or ``DataParallel`` wrapper runs; its parameters are the same."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif _compiled(model):
            model = model._orig_mod
        else:
            return model


def _check_strict(strict: object) -> None:
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")


def _is_dim(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _input_sizes(input_size: object) -> list[tuple[int, ...]]:
    """``(1, 3, 224, 224)`` -> one shape; ``[(1, 3, 8), (1, 5)]`` -> several."""
    expected = "a shape such as (1, 3, 224, 224) or a list of shapes, with positive integer sizes"
    if not isinstance(input_size, (tuple, list, torch.Size)) or len(input_size) == 0:
        raise ValueError(f"input_size must be {expected}; got {input_size!r}")
    if all(isinstance(d, (tuple, list, torch.Size)) for d in input_size):
        shapes = [tuple(s) for s in input_size]
    else:
        shapes = [tuple(input_size)]
    for shape in shapes:
        if not all(_is_dim(d) for d in shape):
            raise ValueError(f"input_size must be {expected}; got {input_size!r}")
    return shapes


def _check_device(device: object) -> torch.device:
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; expected 'meta' (shape-only) or 'cpu'") from None
    if not isinstance(device, torch.device):
        raise TypeError(f"device must be 'meta', 'cpu' or a torch.device, got {type(device).__name__}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} is not available on this machine; use 'meta' or 'cpu'")
    if device.type not in ("meta", "cpu", "cuda"):
        raise ValueError(f"unknown device {str(device)!r}; expected 'meta' (shape-only) or 'cpu'")
    return device


def _check_parameters(modules: list[tuple[str, nn.Module]], device: torch.device) -> None:
    for prefix, module in modules:
        for store in (module._parameters, module._buffers):
            for key, tensor in store.items():
                if tensor is None:
                    continue
                name = f"{prefix}.{key}" if prefix else key
                if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
                    raise ValueError(f"{name} is an uninitialized lazy parameter; run one real forward "
                                     "pass first so its shape is known")
                if device.type != "meta" and tensor.is_meta:
                    raise ValueError(f"device={str(device)!r} runs real tensors, but {name} is on the meta "
                                     "device (the model was built without storage): build it with real "
                                     "parameters to count it on real tensors; device='meta' (the default) "
                                     "counts this model shape-only")


def _check_not_nested(inputs: Any) -> None:
    for tensor in iter_tensors(inputs):
        if tensor.is_nested:
            raise ValueError(NESTED)


def _needs_no_inputs(model: nn.Module) -> bool:
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in signature.parameters.values()
    )


# -- the model's own state ---------------------------------------------------------------------
_Snapshot = list[tuple[nn.Module, dict[str, Any], dict[str, Any], dict[str, Any]]]


def _snapshot(modules: list[tuple[str, nn.Module]]) -> _Snapshot:
    return [(m, dict(vars(m)), dict(m._parameters), dict(m._buffers)) for _, m in modules]


def _substitute(snapshot: _Snapshot, replacements: dict[int, torch.Tensor]) -> None:
    """Put the stand-ins in place of every parameter and buffer (the pass's functional call)."""
    for module, _, parameters, buffers in snapshot:
        for store, originals in ((module._parameters, parameters), (module._buffers, buffers)):
            for key, tensor in originals.items():
                if tensor is not None:
                    store[key] = replacements[id(tensor)]


def _restore(snapshot: _Snapshot) -> None:
    """Put back the parameters and buffers, and undo attribute changes the forward made
    (an RNN re-caching its flat weights, say)."""
    for module, attributes, parameters, buffers in snapshot:
        for current, saved in ((module._parameters, parameters), (module._buffers, buffers),
                               (vars(module), attributes)):
            if len(current) == len(saved) and all(map(operator.is_, current.values(), saved.values())):
                continue    # untouched: same values in the same order (the usual case, checked in C)
            # item by item: a TorchScript module's stores are wrappers without clear()/update()
            for key in [k for k in current.keys() if k not in saved]:
                del current[key]
            for key, value in saved.items():
                if key not in current or current[key] is not value:
                    current[key] = value


# Containers held in attributes (a dict of cached tensors keyed by device type, a list of past
# inputs) can be filled in place by the forward: their contents are kept and put back, so no
# stand-in stays reachable from the model. ``nn.Module``'s own stores (parameters, buffers, children,
# hook dictionaries) are left out: ``_restore`` handles the first two, and the walk over every
# module's dozen stores would cost more than the pass.
_Contents = list[tuple[Union[dict, list, set], Union[dict, list, set]]]
_MODULE_STORES = frozenset(vars(nn.Module()))


def _contents(modules: list[tuple[str, nn.Module]]) -> _Contents:
    """Every dict, list and set reachable from the modules' attributes, with a copy of what it holds."""
    found: _Contents = []
    seen: set[int] = set()

    def visit(value: Any) -> None:
        if not isinstance(value, (dict, list, set)) or id(value) in seen:
            return
        seen.add(id(value))
        found.append((value, value.copy()))
        for item in (value.values() if isinstance(value, dict) else value):
            visit(item)

    for _, module in modules:
        for key, value in vars(module).items():
            if key not in _MODULE_STORES:
                visit(value)
    return found


def _refill(contents: _Contents) -> None:
    """Put back what each container held, in place, wherever the forward changed it."""
    for container, saved in contents:
        if isinstance(container, dict):
            same = len(container) == len(saved) and all(
                k is j and v is w for (k, v), (j, w) in zip(container.items(), saved.items()))
        elif isinstance(container, list):
            same = len(container) == len(saved) and all(map(operator.is_, container, saved))
        else:
            same = container == saved
        if same:
            continue
        container.clear()
        if isinstance(container, list):
            container.extend(saved)
        else:
            container.update(saved)


# -- stand-ins -------------------------------------------------------------------------------------
def _standin(tensor: torch.Tensor, device: str) -> torch.Tensor:
    """A tensor of the same shape, dtype and requires_grad, without storage (meta) or data (fake);
    a DTensor's is a DTensor of the same mesh and placements around a stand-in of its shard."""
    if is_dtensor(tensor):
        return dtensor_standin(tensor, torch.empty_strided(
            tuple(tensor._local_tensor.shape), tuple(tensor._local_tensor.stride()), dtype=tensor.dtype,
            device=device))
    out = torch.empty_strided(tuple(tensor.shape), tuple(tensor.stride()), dtype=tensor.dtype, device=device)
    if not (out.is_floating_point() or out.is_complex()):
        return out
    out.requires_grad_(tensor.requires_grad)
    # an input computed from a leaf is no leaf itself, so in-place operations on it stay legal
    return out.clone() if tensor.requires_grad and not tensor.is_leaf else out


def _replacements(snapshot: _Snapshot, device: torch.device, fake: bool,
                  fresh: bool = False) -> dict[int, torch.Tensor]:
    """Stand-ins for every parameter and buffer, keyed by the original's id (tied tensors stay tied).

    A shape-only pass on a model built on the meta device uses its own tensors: they hold nothing
    (unless ``fresh``: a training step sets gradients on the tensors it runs with).
    On a real device parameters are used as they are and buffers are cloned, so nothing the
    forward does (BatchNorm's running statistics) reaches the model.
    """
    made: dict[int, torch.Tensor] = {}
    for _, _, parameters, buffers in snapshot:
        for store in (parameters, buffers):
            for tensor in store.values():
                if tensor is None or id(tensor) in made:
                    continue
                if device.type == "meta":
                    made[id(tensor)] = tensor if tensor.is_meta and not (fake or fresh) else _standin(
                        tensor, "cpu" if fake else "meta")
                elif isinstance(tensor, nn.Parameter):
                    made[id(tensor)] = tensor if tensor.device == device else _moved(tensor, device)
                else:
                    made[id(tensor)] = tensor.detach().to(device, copy=True)
    return made


def _moved(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    return tensor.detach().to(device).requires_grad_(tensor.requires_grad)


def _inputs(inputs: tuple, kwargs: dict, sizes: Optional[list[tuple[int, ...]]], dtype: torch.dtype,
            device: torch.device, fake: bool) -> tuple[tuple, dict]:
    if sizes is not None:
        if device.type == "meta":
            return tuple(torch.empty(s, dtype=dtype, device="cpu" if fake else "meta") for s in sizes), kwargs
        return tuple(torch.zeros(s, dtype=dtype, device=device) for s in sizes), kwargs
    if device.type == "meta":
        make = lambda t: _standin(t, "cpu" if fake else "meta")  # noqa: E731
    else:
        make = lambda t: _moved(t, device) if (t.device != device or t.is_inference()) else t  # noqa: E731
    # a tensor given twice (self-attention's query, key and value) stays one tensor
    made: dict[int, torch.Tensor] = {}
    convert = lambda t: made[id(t)] if id(t) in made else made.setdefault(id(t), make(t))  # noqa: E731
    return tree_map_only((torch.Tensor, PackedSequence), partial(_convert, convert), (inputs, kwargs),
                         is_leaf=lambda value: isinstance(value, PackedSequence))


def _convert(convert: Callable[[torch.Tensor], torch.Tensor], value: Any) -> Any:
    if not isinstance(value, PackedSequence):
        return convert(value)
    # PyTorch requires a packed sequence's batch sizes on the host: its loop reads them
    indices = [None if t is None else convert(t) for t in (value.sorted_indices, value.unsorted_indices)]
    return PackedSequence(convert(value.data), value.batch_sizes, *indices)


# -- the pass ----------------------------------------------------------------------------------------
# The stand-ins replace the model's parameters and buffers for the length of the pass; two threads
# counting the same model at once would restore each other's stand-ins. Passes are Python-bound
# under the GIL anyway, so one lock for all of them costs nothing.
_PASS_LOCK = threading.RLock()


class _ThisThread(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextlib.contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """The fallback pass re-runs a forward that already failed on meta; when it fails again (a real
    shape error) FakeTensorMode logs the whole traceback before raising. The error itself is what
    the user gets, so that log is held back, for this thread and this pass only."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    quiet = _ThisThread()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


@dataclass(frozen=True)
class _Pass:
    """One validated request of ``count``: what to run, on what, with which formulas."""

    model: nn.Module
    modules: list[tuple[str, nn.Module]]      # named_modules(), walked once per count
    inputs: tuple
    kwargs: dict
    sizes: Optional[list[tuple[int, ...]]]
    dtype: torch.dtype
    device: torch.device
    resolver: Resolver

    def sharded(self) -> Sharded:
        return Sharded(fsdp_states(m for _, m in self.modules))

    def run(self, fake: bool) -> Profile:
        model = self.model
        with contextlib.ExitStack() as stack:
            if fake:
                from torch._subclasses.fake_tensor import FakeTensorMode
                stack.enter_context(_quiet_fake_tensor_log())
                stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            args, kw = _inputs(self.inputs, self.kwargs, self.sizes, self.dtype, self.device, fake)
            sharded = self.sharded()
            with _PASS_LOCK:
                snapshot = _snapshot(self.modules)
                contents = _contents(self.modules)
                # FSDP adopts its stand-ins by padding them: never the model's own meta tensors
                replacements = _replacements(snapshot, self.device, fake, fresh=bool(sharded.states))
                try:
                    _substitute(snapshot, replacements)
                    stack.enter_context(sharded)
                    sharded.adopt()
                    session = Session(model, self.resolver, self.modules, keep_saved=False,
                                      shape_only=self.device.type == "meta")
                    sharded.follow(session)
                    with session:
                        model(*args, **kw)
                finally:
                    _restore(snapshot)
                    _refill(contents)
        meta = {"device": "fake" if fake else self.device.type,
                "input_shapes": [list(t.shape) for t in args if isinstance(t, torch.Tensor)]}
        # a forward whose saved tensors shapes cannot tell (a recurrent kernel answered from
        # shapes, autocast on the host skipped by meta tensors) is replayed where they can
        exact = not (session.answered_from_shapes or session.host_autocast)
        replay = partial(_Pass.replay, replace(self, device=torch.device("meta")),
                         fake or session.host_autocast, session.answered_from_shapes)
        return Profile(model, session.raw, session.spans, meta=meta, modules=self.modules,
                       storages=session.storages, forward_exact=exact, replay=replay, moe=session.moe,
                       ranks=session.distributed)

    def replay(self, fake: bool, real: bool, optimizer: Optional[Callable[[list], torch.optim.Optimizer]],
               train: bool) -> Replayed:
        """The storages (and collectives) of one more pass on fresh stand-ins (never the model's own tensors): a
        forward under ``no_grad``, or (``train``) one steady-state training step: the optimizer's
        state made by a step before, then forward, backward of the first floating output's sum and
        ``optimizer.step()``. Kernels run as they are (no shapes-only answers), so autograd sees
        their graph; ``real`` runs them on real CPU tensors (zeros), for kernels whose saved
        tensors only the CPU kernel knows (oneDNN's recurrent workspace)."""
        model = self.model
        with contextlib.ExitStack() as stack:
            if fake and not real:
                from torch._subclasses.fake_tensor import FakeTensorMode
                stack.enter_context(FakeTensorMode(allow_non_fake_inputs=True))
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad() if train else torch.no_grad())
            # outside FakeTensorMode, the "fake" stand-ins are real CPU tensors
            args, kw = _inputs(self.inputs, self.kwargs, self.sizes, self.dtype, self.device, fake or real)
            if real:
                with torch.no_grad():
                    for t in iter_tensors((args, kw)):
                        t.zero_()
            with _PASS_LOCK:
                snapshot = _snapshot(self.modules)
                replacements = _replacements(snapshot, self.device, fake or real, fresh=True)
                try:
                    _substitute(snapshot, replacements)
                    sharded = stack.enter_context(self.sharded())
                    sharded.adopt()
                    trainable = [p for p in model.parameters() if p.requires_grad]
                    step = _warm_optimizer(optimizer, trainable) if train else None
                    session = Session(model, self.resolver, self.modules, keep_saved=train, shortcuts=False,
                                      whole_thread=train)
                    sharded.follow(session)
                    with session:
                        if step is not None:
                            session.storages.hold(iter_tensors(list(step.state.values())))
                        if not train:
                            model(*args, **kw)
                        else:
                            loss = _loss(model(*args, **kw))
                            ranks = session.distributed
                            if loss is not None and loss.requires_grad:
                                if ranks is not None:
                                    ranks.phase = "backward"
                                loss.backward()
                            del loss
                            if step is not None:
                                if ranks is not None:
                                    ranks.phase = "optimizer"
                                step.step()
                finally:
                    _restore(snapshot)
        ranks = session.distributed
        return Replayed(session.storages, list(ranks.collectives) if ranks is not None else [])


class Replayed(NamedTuple):
    """What a replayed pass leaves: its storages, and the collectives this rank joined."""

    storages: Storages
    collectives: list[Collective]


_DATA_DEPENDENT = ("DataDependentOutputException", "DynamicOutputShapeException",
                   "GuardOnDataDependentSymNode")


def _warm_optimizer(optimizer: Optional[Callable[[list], torch.optim.Optimizer]],
                    trainable: list[torch.Tensor]) -> Optional[torch.optim.Optimizer]:
    """The optimizer over ``trainable`` with its state as one step leaves it, gradients cleared
    again. Adam's (and AdamW's) state is made by its own ``_init_group``, as its step makes it,
    without the step's arithmetic (which changes no size, and on a sharded model of hundreds of
    parameters costs a second); other optimizers take one step."""
    if optimizer is None or not trainable:
        return None
    made = optimizer(trainable)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    if not (isinstance(made, torch.optim.Adam) and _init_adam(made)):
        made.step()
    made.zero_grad(set_to_none=True)
    return made


def _init_adam(made: torch.optim.Adam) -> bool:
    """Adam's state made by ``_init_group`` and its step counters advanced as a step advances
    them; False (nothing made) where this PyTorch's ``_init_group`` takes other arguments."""
    with torch.no_grad():
        for group in made.param_groups:
            steps: list[torch.Tensor] = []
            try:
                made._init_group(group, [], [], [], [], [], steps)
            except TypeError:
                made.state.clear()
                return False
            for step in steps:
                step += 1
    return True


def _loss(output: Any) -> Optional[torch.Tensor]:
    """``output.sum()`` of the first floating tensor of the output, as a training step takes it."""
    for t in iter_tensors(output):
        if t.is_floating_point():
            return t.sum()
    return None


def _data_dependent(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    if names.intersection(_DATA_DEPENDENT):
        return True
    text = str(error)
    return "cannot be called on meta tensors" in text or "data-independent" in text


def count(model: nn.Module, *inputs: Any, input_size: Optional[SizeLike] = None,
          dtype: torch.dtype = torch.float32, device: Union[str, torch.device] = "meta",
          kwargs: Optional[Mapping[str, Any]] = None, formulas: Optional[Mapping[object, Any]] = None,
          strict: bool = False) -> Profile:
    """Count one forward pass of ``model`` and return its ``Profile``.

    ``device="meta"`` (default) is shape-only: parameters, buffers and inputs are replaced by
    stand-ins without storage, so nothing is computed or allocated and the model is untouched.
    A model that needs a real device type (``torch.autocast(x.device.type)``) or mixes in CPU
    tensors is retried under ``FakeTensorMode``. ``device="cpu"`` runs real tensors (zeros for
    ``input_size``). Either way the model's parameters, buffers, mode, attributes and hooks are
    left as they were.
    """
    _check_model(model)
    _check_strict(strict)
    model = _unwrapped(model)
    if inputs and input_size is not None:
        raise ValueError("give example inputs or input_size=, not both")
    sizes = _input_sizes(input_size) if input_size is not None else None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")
    device = _check_device(device)
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a dict of keyword inputs, got {type(kwargs).__name__}")
    kwargs = dict(kwargs or {})
    if not inputs and sizes is None and not kwargs and not _needs_no_inputs(model):
        raise ValueError(f"{type(model).__name__}.forward takes inputs: pass example tensors or "
                         "input_size=(...)")
    _check_not_nested((inputs, kwargs))
    resolver = Resolver(validate_overrides(formulas))
    modules = list(model.named_modules())
    _check_parameters(modules, device)
    request = _Pass(model, modules, inputs, kwargs, sizes, dtype, device, resolver)
    request.sharded().check()

    try:
        result = request.run(fake=False) if device.type != "meta" else _shape_only(request)
    except Exception as error:
        if sizes is not None and dtype.is_floating_point and _token_ids(error):
            error.add_note("torchflops: the input feeds an nn.Embedding, which takes token ids: "
                           "pass dtype=torch.long with input_size")
        raise
    result.check_unsupported(strict)
    return result


def _token_ids(error: BaseException) -> bool:
    """Whether a pass failed because an ``nn.Embedding`` was fed floating-point values."""
    text = str(error)
    return "'indices'" in text and ("Long" in text or "Int" in text)


def _shape_only(request: _Pass) -> Profile:
    try:
        return request.run(fake=False)
    except Exception as error:  # noqa: BLE001 - retried below, then re-raised unchanged
        on_meta = error
    try:
        return request.run(fake=True)
    except Exception as error:  # noqa: BLE001
        on_fake = error
    if _data_dependent(on_meta) or _data_dependent(on_fake):
        # the message and the module it names come from the same attempt
        error = on_meta if _data_dependent(on_meta) else on_fake
        where = [n for n in getattr(error, "__notes__", []) if n.startswith(NOTE_PREFIX)]
        raise ShapeOnlyError(
            f"{type(request.model).__name__} cannot run shape-only: its forward depends on tensor values "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            f"{'; ' + where[0][len(NOTE_PREFIX):].strip() if where else ''}. {_real_pass_advice(request.modules)}"
        ) from error
    raise on_meta


def _real_pass_advice(modules: list[tuple[str, nn.Module]]) -> str:
    """How to count on real tensors, from where the user stands: a model built on the meta device
    has no values to run on, so ``device='cpu'`` alone would only fail again."""
    on_meta = any(t.is_meta for _, m in modules for store in (m._parameters, m._buffers)
                  for t in store.values() if t is not None)
    if on_meta:
        return ("Its parameters are on the meta device (built without storage), so build it with real "
                "parameters (outside torch.device('meta')) and count it with device='cpu'.")
    return "Count it on real tensors with device='cpu'."


@contextlib.contextmanager
def profile(model: nn.Module, *, formulas: Optional[Mapping[object, Any]] = None,
            strict: bool = False) -> Iterator[Profile]:
    """Count every forward call of ``model`` made inside the block; yields the ``Profile``.

    The profile is empty inside the block and filled when the block ends (also when it
    raises); the hooks are removed then.
    """
    _check_model(model)
    _check_strict(strict)
    if _compiled(model):
        raise TypeError("tf.profile cannot see inside torch.compile'd code: profile the original module "
                        "(model._orig_mod, same parameters) or use tf.count(model, ...)")
    resolver = Resolver(validate_overrides(formulas))
    result = Profile(model, [], [], meta={"device": "profile"})
    # the block's own work is followed whole (a backward, an optimizer step): its peaks are measured
    session = Session(model, resolver, whole_thread=True)
    with session:
        try:
            yield result
        finally:
            result._load(session.raw, session.spans, session.moe, session.storages)
    result.check_unsupported(strict)
