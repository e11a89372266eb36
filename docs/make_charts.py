"""Regenerate the charts the README shows: ``python docs/make_charts.py`` (needs torchvision, matplotlib).

The Inception blocks are the notebook seed's (shared/seeds/002...), as tests/blocks.py defines them.
"""
import sys
from pathlib import Path

import torchvision

import torchflops as tf

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from blocks import InceptionBlock, InceptionBlockV2, NaiveBlock  # noqa: E402


def main() -> None:
    blocks = {"naive": NaiveBlock(), "reduced": InceptionBlock(), "v2": InceptionBlockV2()}
    profiles = {name: tf.count(block, input_size=(1, 256, 28, 28)) for name, block in blocks.items()}
    for name, prof in profiles.items():
        prof.plot_branches(DOCS / f"{name}_block_branches.png", "")
    tf.compare_plot(profiles, DOCS / "inception_blocks.png")

    googlenet = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    prof = tf.count(googlenet, input_size=(1, 3, 224, 224))
    prof.plot(DOCS / "googlenet.png", top=15)
    prof.plot(DOCS / "googlenet_depth1.png", depth=1, top=12)
    prof.plot_branches(DOCS / "googlenet_inception3a.png", "inception3a")
    for path in sorted(DOCS.glob("*.png")):
        print(path.relative_to(DOCS.parent))


if __name__ == "__main__":
    main()
