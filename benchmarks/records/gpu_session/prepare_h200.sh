#!/bin/bash
# Here (CPU), before a GPU call of issue 18: fill the ignored folder .device/ that the call carries.
#   .device/data/flowers-102/   Flowers-102 at 64×64, JPEG q95 4:4:4 (pack_flowers.py)          ~33 MiB
#   .device/snap/{src,benchmarks}  git archive of HEAD: the call runs committed code, not others' edits
#   .device/ckpt/classifiers/flowers102-64   the domain classifier (the released checkpoints stay here)
#   .device/whl/diffusers-0.42.1-py3-none-any.whl   not in the H200 image (its deps are)              ~6 MiB
# Usage: bash benchmarks/records/gpu_session/prepare_h200.sh   (from the repository root; idempotent)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
D=.device
[ -f $D/data/flowers-102/setid.mat ] && [ "$(ls $D/data/flowers-102/jpg | wc -l)" = 8189 ] \
  || OMP_NUM_THREADS=1 .venv/bin/python benchmarks/records/gpu_session/pack_flowers.py --out $D/data
rm -rf $D/snap && mkdir -p $D/snap && git archive HEAD src benchmarks | tar -x -C $D/snap
mkdir -p $D/ckpt/classifiers && rm -rf $D/ckpt/classifiers/flowers102-64 \
  && cp -r checkpoints/classifiers/flowers102-64 $D/ckpt/classifiers/
ls $D/whl/diffusers-*.whl >/dev/null 2>&1 || .venv/bin/python -m pip download -q --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d $D/whl diffusers==0.42.1
echo "snapshot of $(git rev-parse --short HEAD); .device is $(du -sb $D | cut -f1) bytes:"; du -sh $D/*
