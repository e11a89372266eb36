"""Models from Hugging Face configs, for the command line's ``hf:PATH_OR_ID``: built from
``config.json`` alone on the meta device (no weights are read or downloaded), fed the inputs the
config describes (token ids, pixel values or audio features).

A folder is read as it is; any other name is a Hub id, looked up the way transformers does (the local
Hugging Face cache when ``HF_HUB_OFFLINE=1``). transformers is an optional extra.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Optional

PREFIX = "hf:"

__all__ = ["PREFIX", "HubError", "add_arguments", "report"]

# tried in this order: the head a user of that config most likely means (an encoder-decoder's
# decoder alone is a causal LM too, so for those the sequence-to-sequence heads come first)
_HEADS = ("AutoModelForCausalLM", "AutoModelForImageClassification", "AutoModel")
_ENCODER_DECODER_HEADS = ("AutoModelForSeq2SeqLM", "AutoModelForSpeechSeq2Seq") + _HEADS


class HubError(ValueError):
    """A config that cannot be found, read or built: one line for the command line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seq-len", type=int, default=128, metavar="N",
                        help="hf: models: tokens per sequence (or audio samples) fed to the model (default 128)")
    parser.add_argument("--batch", type=int, default=1, metavar="B", help="hf: models: batch size (default 1)")
    parser.add_argument("--generate", type=int, default=None, metavar="NEW_TOKENS",
                        help="hf: decoder models: also print the cost of generating NEW_TOKENS after a "
                             "--seq-len prompt, and the KV cache it holds")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise HubError("hf: models need transformers: pip install 'torchflops[hf]'") from None
    return transformers


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _config(source: str) -> Any:
    transformers = _transformers()
    if os.path.isdir(source):
        path = os.path.join(source, "config.json")
        if not os.path.isfile(path):
            raise HubError(f"{source!r} has no config.json; give a model folder or a Hub id such as gpt2")
        try:
            with open(path, encoding="utf-8") as file:
                model_type = json.load(file).get("model_type")
        except (OSError, ValueError, AttributeError) as error:
            raise HubError(f"cannot read {path}: {error}") from None
        known = transformers.models.auto.configuration_auto.CONFIG_MAPPING
        if model_type not in known:
            raise HubError(f"unknown model type {model_type!r} in {path} (transformers "
                           f"{transformers.__version__} does not know it)")
    elif source.startswith((".", "/", "~")) or os.path.exists(source):
        raise HubError(f"{source!r} is not a model folder; give a folder holding config.json or a Hub id")
    try:
        return transformers.AutoConfig.from_pretrained(source)
    except (OSError, ValueError, KeyError) as error:
        first = _first_line(error)
        if "model type" in first and "does not recognize" in first:
            raise HubError(f"unknown model type in the config of {source!r}: {first}") from None
        raise HubError(f"cannot load the config of {source!r}: {first}") from None


def _build(config: Any) -> Any:
    import torch

    transformers = _transformers()
    for head in _ENCODER_DECODER_HEADS if getattr(config, "is_encoder_decoder", False) else _HEADS:
        auto = getattr(transformers, head, None)
        if auto is None or type(config) not in auto._model_mapping:
            continue
        try:
            with torch.device("meta"):
                return auto.from_config(config).eval()
        except Exception as error:  # noqa: BLE001 - transformers' own message says what is wrong
            raise HubError(f"building {auto.__name__} from {type(config).__name__} failed: "
                           f"{type(error).__name__}: {_first_line(error)}") from error
    raise HubError(f"transformers has no model class for config {type(config).__name__}")


def _inputs(model: Any, seq_len: int, batch: int) -> dict[str, Any]:
    """Meta tensors for the model's main input (and the decoder's, for encoder-decoders)."""
    import torch

    config = model.config
    name = model.main_input_name
    meta = dict(device="meta")
    if name == "input_ids":
        inputs = {name: torch.zeros(batch, seq_len, dtype=torch.long, **meta)}
    elif name == "pixel_values":
        vision = getattr(config, "vision_config", None) or config
        size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
        inputs = {name: torch.zeros(batch, vision.num_channels, size, size, **meta)}
    elif name == "input_features":
        # a speech encoder's log-mel frames: its convolutions halve them to max_source_positions
        inputs = {name: torch.zeros(batch, config.num_mel_bins, 2 * config.max_source_positions, **meta)}
    elif name == "input_values":
        inputs = {name: torch.zeros(batch, seq_len, **meta)}     # raw audio samples
    else:
        raise HubError(f"{type(model).__name__} takes {name!r}, which torchflops cannot make from a config")
    if getattr(config, "is_encoder_decoder", False):
        decoder = min(seq_len, getattr(config, "max_target_positions", seq_len))
        inputs["decoder_input_ids"] = torch.zeros(batch, decoder, dtype=torch.long, **meta)
    return inputs


def report(args: argparse.Namespace, render: Callable[[Any, argparse.Namespace], str],
           count: Optional[Callable[..., Any]] = None) -> str:
    """The report for ``hf:PATH_OR_ID``: ``render`` of the pass ``count`` (default ``tf.count``)
    counted, then the generation summary."""
    import torchflops as tf

    source = args.model[len(PREFIX):]
    if not source:
        raise HubError("give a folder or Hub id after hf:, such as hf:gpt2 or hf:./my-model")
    for flag, value in (("--seq-len", args.seq_len), ("--batch", args.batch), ("--generate", args.generate)):
        if value is not None and value < 1:
            raise HubError(f"{flag} must be >= 1, got {value}")
    if args.device != "meta":
        raise HubError("hf: models are built without weights, so they count shape-only: drop --device")
    model = _build(_config(source))
    inputs = _inputs(model, args.seq_len, args.batch)
    if args.generate is not None and not model.can_generate():
        raise HubError(f"--generate needs a decoder model; {type(model).__name__} does not generate")
    if args.generate is not None and args.format == "csv":
        raise HubError("--generate cannot be written as CSV rows; use --format json, table or markdown")
    try:
        prof = (count or tf.count)(model, kwargs=inputs)
        if args.generate is None:
            return render(prof, args)
        gen = tf.generation(model, args.seq_len, args.generate, batch=args.batch)
        if args.format == "json":
            return json.dumps({**prof.to_dict(), "generation": gen.to_dict()}, indent=2)
        text = render(prof, args) + "\n" + gen.summary()
    except (TypeError, ValueError, RuntimeError) as error:
        first = _first_line(error)
        shown = " and ".join(f"{k} {'x'.join(map(str, t.shape))}" for k, t in inputs.items())
        raise HubError(f"{type(model).__name__} failed on {shown}: {type(error).__name__}: {first}") from error
    return text
