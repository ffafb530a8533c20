"""Link Flowers-102 classes into a `folder:` dataset (one sub-folder of JPEG symlinks per class), as a user would
bring their own photographs. docs/FINETUNE.md sections 1c and 1d.

    python benchmarks/flowers_folder.py /tmp/flowers5 --classes FIVE          # the five fine-tuning classes
    python benchmarks/flowers_folder.py /tmp/flowers97 --classes FIVE --exclude  # every other class (the base)
"""
import argparse
import os

import scipy.io
import torchvision.datasets as tvd

FIVE = ("passion flower", "water lily", "frangipani", "wallflower", "rose")  # the fine-tuning classes of 1c and 1d


def link(root: str, classes: set[str], exclude: bool, data: str = "../shared/data") -> int:
    """Symlink the images of `classes` (or, with `exclude`, of all the others) under root/<class>/; returns how many
    links were made (existing ones are kept)."""
    data = os.path.abspath(data)
    labels = scipy.io.loadmat(f"{data}/flowers-102/imagelabels.mat")["labels"][0]
    made = 0
    for k, name in enumerate(tvd.Flowers102(data, split="train").classes):
        if (name in classes) == exclude:
            continue
        os.makedirs(f"{root}/{name}", exist_ok=True)
        for i in (i for i, label in enumerate(labels) if label == k + 1):
            dst = f"{root}/{name}/image_{i + 1:05d}.jpg"
            if not os.path.exists(dst):
                os.symlink(f"{data}/flowers-102/jpg/image_{i + 1:05d}.jpg", dst)
                made += 1
    return made


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--classes", default="FIVE", help="comma-separated class names, or FIVE")
    p.add_argument("--exclude", action="store_true", help="link every class except these")
    a = p.parse_args()
    names = set(FIVE) if a.classes == "FIVE" else {c.strip() for c in a.classes.split(",")}
    print(f"{link(a.root, names, a.exclude)} images linked under {a.root}")
