"""Command line: ``torchflops MODEL`` prints the cost report of a torchvision model."""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchflops", description="What a PyTorch model costs, layer by layer.")
    parser.add_argument("model", help="a torchvision model name, e.g. googlenet")
    parser.add_argument("--input-size", default=None, help="comma-separated input shape, e.g. 1,3,224,224")
    parser.add_argument("--depth", type=int, default=1, help="fold modules deeper than this (default 1)")
    parser.add_argument("--top", type=int, default=None, help="keep the K most expensive rows")
    parser.add_argument("--format", default="table", choices=("table", "markdown", "json", "csv"))
    parser.add_argument("--device", default="meta", choices=("meta", "cpu"))
    return parser


def _fail(message: str) -> int:
    print(f"torchflops: error: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    import torchvision

    import torchflops as tf

    names = torchvision.models.list_models(module=torchvision.models)
    if args.model not in names:
        return _fail(f"unknown model {args.model!r}")
    if args.input_size:
        try:
            size = tuple(int(d) for d in args.input_size.split(","))
        except ValueError:
            return _fail(f"malformed --input-size {args.input_size!r}; expected e.g. 1,3,224,224")
    else:
        crop = getattr(torchvision.models.get_model_weights(args.model).DEFAULT, "transforms", None)
        size = (1, 3, crop().crop_size[0], crop().crop_size[0]) if crop else (1, 3, 224, 224)
    kwargs = {"aux_logits": False, "init_weights": False} if args.model in ("googlenet", "inception_v3") else {}
    import torch
    with torch.device("meta"):
        model = torchvision.models.get_model(args.model, weights=None, **kwargs).eval()
    prof = tf.count(model, input_size=size, device=args.device)
    if args.format == "json":
        print(prof.to_json())
    elif args.format == "csv":
        print(prof.to_csv(), end="")
    else:
        print(prof.table(depth=args.depth, top=args.top, fmt="simple" if args.format == "table" else "markdown"))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
