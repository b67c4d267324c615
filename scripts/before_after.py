"""Write a side-by-side PNG (noisy | denoised | clean) of three same-sized images: a quick visual check."""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image


def main(out: str, *paths: str) -> None:
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    gap = np.full((images[0].shape[0], 8, 3), 255, dtype=np.uint8)
    row = [images[0]]
    for im in images[1:]:
        row += [gap, im]
    Image.fromarray(np.concatenate(row, axis=1)).save(out)
    print(f"{out}: {' | '.join(paths)}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: before_after.py OUT.png IMAGE...")
    main(sys.argv[1], *sys.argv[2:])
