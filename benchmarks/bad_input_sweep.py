"""Malformed inputs through the real `largo` CLI: every one must fail cleanly.

Each case runs `python -m largo ...` as a subprocess and is checked for
  * no Python traceback on stdout or stderr,
  * stderr is exactly one non-empty line and it starts with `largo: error:`,
  * a non-zero exit code,
  * no file that existed before in the watched folder (the run directory, or the inputs) changed: SHA-256
    before/after; `log.jsonl` may only grow (its old content stays a prefix) and `checkpoints/latest` may
    only move on to a newer complete checkpoint,
plus, for the pickle payloads, that the payload never ran (its marker file does not exist).

Usage:  .venv/bin/python benchmarks/bad_input_sweep.py [--workdir DIR] [--only SUBSTRING] [--markdown FILE]
A Markdown table goes to stdout (and to --markdown). Exit code 0 when every case passes.
Takes ~10 min on 2 busy CPU cores: ~170 subprocesses at ~3-4 s of start-up (importing torch) each.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import make_folder  # noqa: E402  (the same synthetic folder dataset as tests/test_reliability.py)

PY = sys.executable
# A ~0.17 M-parameter net at 8x8 on a 24-image folder: a training step takes a few ms.
TINY = ["--resolution", "8", "--base-channels", "32", "--channel-mult", "1", "--num-res-blocks", "1",
        "--attention-resolutions", "", "--num-heads", "1", "--batch-size", "4", "--timesteps", "100",
        "--sample-steps", "3", "--grid-per-class", "1", "--device", "cpu", "--max-minutes", "1",
        "--log-every", "1", "--quiet"]


# -- fixtures ---------------------------------------------------------------------------------------
def train_argv(data: Path, run: Path, *extra: str, steps: int = 4) -> list[str]:
    return ["train", "--dataset", f"folder:{data}", *TINY, "--steps", str(steps), "--run-dir", str(run), *extra]


def snapshot(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def unchanged(folder: Path, before: dict[str, str], before_bytes: dict[str, bytes]) -> bool:
    """Every earlier file is byte-identical, except two that may only move forward: log.jsonl (append-only)
    and checkpoints/latest (may name a newer complete checkpoint, when training got that far)."""
    after = snapshot(folder)
    for rel, digest in before.items():
        if rel.endswith("log.jsonl") and rel in after:
            if not (folder / rel).read_bytes().startswith(before_bytes[rel]):
                return False
        elif rel.endswith("checkpoints/latest") and rel in after and after[rel] != digest:
            old, new = before_bytes[rel].decode().strip(), (folder / rel).read_text().strip()
            if not (new > old and (folder / rel).parent.joinpath(new, "meta.json").is_file()):
                return False
        elif after.get(rel) != digest:
            return False
    return True


# -- file damage ------------------------------------------------------------------------------------
def truncate(path: Path, frac: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * frac)])


def latest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()


class ExecPayload:
    """Unpickling this runs exec(...), which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('payload ran')",))


class SystemPayload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def edit_json(path: Path, fn: Callable[[dict], object]) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def png_bomb(path: Path, side: int = 40_000) -> None:
    """A valid-looking PNG header claiming side x side pixels (PIL's decompression-bomb check)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


# -- the cases --------------------------------------------------------------------------------------
@dataclass
class Case:
    category: str
    name: str
    prepare: Callable[[Path], tuple[list[str], Path]]  # case dir -> (argv after `largo`, watched folder)
    wrapper: str = ""  # Python run before the CLI (patches for simulated disk-full)
    rlimit_fsize: int = 0
    marker: bool = False  # a pickle payload: its marker file must not exist afterwards
    mount_kb: int = 0  # 1: run in a tmpfs just larger than a one-checkpoint run (a full disk); needs root
    result: dict = field(default_factory=dict)


def build_cases(base: Path, data: Path, other_model_run: Path) -> list[Case]:
    cases: list[Case] = []

    def add(category, name, prepare, **kw):
        cases.append(Case(category, name, prepare, **kw))

    def more_steps(run: Path) -> Path:
        """Raise train.steps in config.json (formatted as the trainer writes it back) so a resume trains and
        writes new checkpoint folders."""
        cfg = json.loads((run / "config.json").read_text())
        cfg["train"]["steps"] = 8
        cfg["train"]["keep"] = 10  # so retention deletes nothing that existed before
        (run / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        return run

    def run_copy(d: Path) -> Path:
        run = d / "run"
        shutil.copytree(base, run)
        return run

    # -- checkpoints: damaged or crafted files, loaded by `sample` and by `train --resume` ---------------
    def ckpt_case(damage: Callable[[Path, Path], None], command: str, *extra: str):
        def prepare(d: Path):
            run = run_copy(d)
            damage(latest(run), d)
            argv = ["sample", str(run), "--n", "1", "--device", "cpu", *extra] if command == "sample" else \
                ["train", "--resume", str(run), "--quiet"]
            return argv, run
        return prepare

    for file, cmd, extra in (("ema.safetensors", "sample", ()), ("model.safetensors", "sample", ("--weights", "online")),
                             ("ema.safetensors", "resume", ()), ("model.safetensors", "resume", ())):
        add("checkpoint", f"{file} truncated to half ({cmd})", ckpt_case(lambda c, d, f=file: truncate(c / f), cmd, *extra))
    add("checkpoint", "ema.safetensors empty (sample)", ckpt_case(lambda c, d: (c / "ema.safetensors").write_bytes(b""), "sample"))
    add("checkpoint", "ema.safetensors random bytes (sample)",
        ckpt_case(lambda c, d: (c / "ema.safetensors").write_bytes(os.urandom(4096)), "sample"))
    add("checkpoint", "safetensors header length 2^62 (sample)",
        ckpt_case(lambda c, d: (c / "ema.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}"), "sample"))
    add("checkpoint", "safetensors header not JSON (sample)",
        ckpt_case(lambda c, d: (c / "ema.safetensors").write_bytes(struct.pack("<Q", 8) + b"notjson!"), "sample"))

    def reshape_one(c: Path, d: Path, file="ema.safetensors"):
        t = load_file(str(c / file))
        k = next(k for k in sorted(t) if t[k].ndim == 4)
        t[k] = torch.zeros(t[k].shape[0] * 2, *t[k].shape[1:])
        save_file(t, str(c / file))

    def drop_one(c: Path, d: Path, file="ema.safetensors"):
        t = load_file(str(c / file))
        t.pop(sorted(t)[0])
        save_file(t, str(c / file))

    def add_one(c: Path, d: Path, file="model.safetensors"):
        t = load_file(str(c / file))
        t["extra.weight"] = torch.zeros(3)
        save_file(t, str(c / file))

    add("checkpoint", "wrong-shape weight tensor (sample)", ckpt_case(reshape_one, "sample"))
    add("checkpoint", "wrong-shape weight tensor (resume)",
        ckpt_case(lambda c, d: reshape_one(c, d, "model.safetensors"), "resume"))
    add("checkpoint", "weights missing a tensor (sample)", ckpt_case(drop_one, "sample"))
    add("checkpoint", "weights with an unexpected tensor (resume)", ckpt_case(add_one, "resume"))
    add("checkpoint", "weights file deleted (sample)", ckpt_case(lambda c, d: (c / "ema.safetensors").unlink(), "sample"))
    add("checkpoint", "weights from a different model (sample)",
        ckpt_case(lambda c, d: shutil.copy(latest(other_model_run) / "ema.safetensors", c / "ema.safetensors"), "sample"))
    add("checkpoint", "state.pt truncated (resume)", ckpt_case(lambda c, d: truncate(c / "state.pt"), "resume"))
    add("checkpoint", "state.pt empty (resume)", ckpt_case(lambda c, d: (c / "state.pt").write_bytes(b""), "resume"))
    add("checkpoint", "state.pt random bytes (resume)",
        ckpt_case(lambda c, d: (c / "state.pt").write_bytes(os.urandom(2048)), "resume"))
    add("checkpoint", "state.pt deleted (resume)", ckpt_case(lambda c, d: (c / "state.pt").unlink(), "resume"))
    add("checkpoint", "state.pt is a list, not a dict (resume)",
        ckpt_case(lambda c, d: torch.save([1, 2, 3], c / "state.pt"), "resume"))
    add("checkpoint", "state.pt missing keys (resume)",
        ckpt_case(lambda c, d: torch.save({"step": 4}, c / "state.pt"), "resume"))

    def bad_rng(c: Path, d: Path):
        s = torch.load(c / "state.pt", weights_only=True)
        s["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
        torch.save(s, c / "state.pt")

    add("checkpoint", "state.pt with a bad RNG state (resume)", ckpt_case(bad_rng, "resume"))
    def other_state(c: Path, d: Path):  # same tensor count, other widths; the resume would train 4 more steps
        shutil.copy(latest(other_model_run) / "state.pt", c / "state.pt")
        more_steps(c.parent.parent)

    add("checkpoint", "state.pt from a model of another width (resume)", ckpt_case(other_state, "resume"))

    # pickle payloads: refused by torch.load(weights_only=True) before they run
    def payload(kind: str):
        def damage(c: Path, d: Path):
            marker = d / "PAYLOAD_RAN"
            obj = ExecPayload(marker) if kind != "system" else SystemPayload(marker)
            state = {"step": 4, "optimizer": obj, "ema_updates": 4, "stream": {}, "rng": {}}
            if kind == "legacy":
                with open(c / "state.pt", "wb") as f:  # protocol 2: the unpickler reaches the GLOBAL opcode
                    pickle.dump(state, f, protocol=2)
            else:
                torch.save(state, c / "state.pt")
        return damage

    for kind in ("exec", "system", "legacy"):
        add("pickle", f"state.pt with a {kind} __reduce__ payload (resume)", ckpt_case(payload(kind), "resume"),
            marker=True)

    def meta_case(fn):
        return ckpt_case(lambda c, d: edit_json(c / "meta.json", fn), "sample")

    add("checkpoint", "meta.json format_version 99 (sample)", meta_case(lambda m: m.update(format_version=99)))
    add("checkpoint", "meta.json without format_version (sample)", meta_case(lambda m: m.pop("format_version")))
    add("checkpoint", "meta.json format_version 99 (resume)",
        ckpt_case(lambda c, d: edit_json(c / "meta.json", lambda m: m.update(format_version=99)), "resume"))
    add("checkpoint", "meta.json without config (sample)", meta_case(lambda m: m.pop("config")))
    add("checkpoint", "meta.json config base_channels 33 (sample)",
        meta_case(lambda m: m["config"]["model"].update(base_channels=33)))
    add("checkpoint", "meta.json config with unknown key (sample)",
        meta_case(lambda m: m["config"]["model"].update(width=3)))
    add("checkpoint", "meta.json class_names not a list (sample)", meta_case(lambda m: m.update(class_names=7)))
    add("checkpoint", "meta.json not JSON (sample)",
        ckpt_case(lambda c, d: (c / "meta.json").write_text("{oops"), "sample"))

    def folder_case(damage):
        def prepare(d: Path):
            run = run_copy(d)
            damage(latest(run))
            return ["sample", str(latest(run)), "--n", "1", "--device", "cpu"], run
        return prepare

    add("checkpoint", "checkpoint folder without meta.json (sample DIR)", folder_case(lambda c: (c / "meta.json").unlink()))

    def run_case(damage, argv_fn):
        def prepare(d: Path):
            run = run_copy(d)
            damage(run)
            return argv_fn(run), run
        return prepare

    resume = lambda run: ["train", "--resume", str(run), "--quiet"]  # noqa: E731
    sample = lambda run: ["sample", str(run), "--n", "1", "--device", "cpu"]  # noqa: E731

    def no_checkpoints(run: Path):
        for p in (run / "checkpoints").iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        (run / "checkpoints" / "latest").write_bytes(b"\xff\xfe\x00garbage")

    add("run", "no complete checkpoint, garbage latest (resume)", run_case(no_checkpoints, resume))
    add("run", "no complete checkpoint, garbage latest (sample)", run_case(no_checkpoints, sample))
    add("run", "config.json model edited (resume)",
        run_case(lambda r: edit_json(r / "config.json", lambda c: c["model"].update(base_channels=64)), resume))
    add("run", "config.json deleted (resume)", run_case(lambda r: (r / "config.json").unlink(), resume))
    add("run", "config.json not JSON (resume)", run_case(lambda r: (r / "config.json").write_text("[1,"), resume))
    add("run", "resume with a frozen flag (--resolution 16)",
        run_case(lambda r: None, lambda r: ["train", "--resume", str(r), "--resolution", "16"]))
    add("run", "resume with --run-dir", run_case(lambda r: None, lambda r: ["train", "--resume", str(r), "--run-dir", "x"]))
    add("run", "train into an existing run directory", run_case(lambda r: None, lambda r: train_argv(data, r)))
    add("run", "resume a folder that is not a run", lambda d: (["train", "--resume", str(d / "nothing")], d))

    # -- configs ------------------------------------------------------------------------------------
    def config_case(text_or_fn):
        def prepare(d: Path):
            cfg_path = d / "config.json"
            if callable(text_or_fn):
                base_cfg = json.loads((base / "config.json").read_text())
                text_or_fn(base_cfg)
                cfg_path.write_text(json.dumps(base_cfg))
            else:
                cfg_path.write_text(text_or_fn)
            return ["train", "--config", str(cfg_path), "--run-dir", str(d / "new"), "--max-minutes", "1",
                    "--steps", "2", "--quiet"], d
        return prepare

    for name, fn in [
        ("lr is a string", lambda c: c["train"].update(lr="fast")),
        ("steps is a float", lambda c: c["train"].update(steps=1.5)),
        ("hflip is a string", lambda c: c["data"].update(hflip="yes")),
        ("channel_mult is a string", lambda c: c["model"].update(channel_mult="1,2")),
        ("channel_mult holds a float", lambda c: c["model"].update(channel_mult=[1, 2.5])),
        ("unknown key", lambda c: c["train"].update(learning_rate=1e-3)),
        ("unknown section", lambda c: c.update(optimizer={})),
        ("section is a list", lambda c: c.update(train=[1])),
        ("ema_decay 1.5", lambda c: c["train"].update(ema_decay=1.5)),
        ("timesteps 10^9", lambda c: c["diffusion"].update(timesteps=10**9)),
        ("resolution 0", lambda c: c["data"].update(resolution=0)),
        ("schedule 'quadratic'", lambda c: c["diffusion"].update(schedule="quadratic")),
        ("sampler 'foo'", lambda c: c["sample"].update(sampler="foo")),
        ("sample_steps 0", lambda c: c["sample"].update(sample_steps=0)),
        ("batch_size 0", lambda c: c["train"].update(batch_size=0)),
        ("bad_images 'maybe'", lambda c: c["data"].update(bad_images="maybe")),
        ("keep 0", lambda c: c["train"].update(keep=0)),
    ]:
        add("config", f"config.json: {name}", config_case(fn))
    add("config", "config.json: lr NaN", config_case(json.dumps({"train": {"lr": float("nan")}})))
    add("config", "config.json: top level is a list", config_case("[1, 2]"))
    add("config", "config.json: not JSON", config_case("{'single': quotes}"))
    add("config", "config.json: empty file", config_case(""))
    add("config", "config.json: binary garbage", config_case("\x00\x01\x02"))
    add("config", "--config file missing", lambda d: (["train", "--config", str(d / "missing.json")], d))

    def flag_case(*flags: str):
        return lambda d: (train_argv(data, d / "new", *flags, steps=2), d)

    for flags in (("--lr", "inf"), ("--lr", "-1"), ("--p-uncond", "1.5"), ("--resolution", "30", "--channel-mult", "1,2,2"),
                  ("--base-channels", "48"), ("--device", "cuda:7"), ("--device", "tpu"), ("--precision", "fp16"),
                  ("--lr", "abc")):
        add("config", f"flag {' '.join(flags)}", flag_case(*flags))

    # -- data -----------------------------------------------------------------------------------------
    def data_case(build: Callable[[Path], str], *flags: str):
        def prepare(d: Path):
            dataset = build(d)
            return ["train", "--dataset", dataset, *TINY, "--steps", "2", "--run-dir", str(d / "new"), *flags], d
        return prepare

    def with_bad(d: Path, bad: Callable[[Path], None]) -> str:
        folder = make_folder(d / "data")
        bad(folder / "cat")
        return f"folder:{folder}"

    def trunc_jpeg(c: Path):
        Image.fromarray(np.full((32, 32, 3), 99, np.uint8)).save(c / "x.jpg", quality=90)
        truncate(c / "x.jpg", 0.4)

    def trunc_png(c: Path):
        shutil.copy(c / "000.png", c / "x.png")
        truncate(c / "x.png", 0.6)

    def corrupt_png_crc(c: Path):
        b = bytearray((c / "000.png").read_bytes())
        b[40] ^= 0xFF  # inside IDAT
        (c / "x.png").write_bytes(bytes(b))

    add("data", "folder dataset missing", lambda d: (["train", "--dataset", f"folder:{d / 'nope'}", *TINY,
                                                      "--run-dir", str(d / "new")], d))
    add("data", "folder without class sub-folders",
        data_case(lambda d: (d / "flat").mkdir() or (Image.new("RGB", (8, 8)).save(d / "flat" / "a.png")) or f"folder:{d / 'flat'}"))
    add("data", "empty class folder", data_case(lambda d: with_bad(d, lambda c: (c.parent / "empty").mkdir())))
    add("data", "truncated JPEG (--bad-images error)", data_case(lambda d: with_bad(d, trunc_jpeg)))
    add("data", "truncated PNG (--bad-images error)", data_case(lambda d: with_bad(d, trunc_png)))
    add("data", "PNG with a corrupt IDAT (--bad-images error)", data_case(lambda d: with_bad(d, corrupt_png_crc)))
    add("data", "zero-byte .png", data_case(lambda d: with_bad(d, lambda c: (c / "x.png").write_bytes(b""))))
    add("data", "text file named .jpg", data_case(lambda d: with_bad(d, lambda c: (c / "x.jpg").write_text("hello"))))
    add("data", "decompression-bomb PNG header (40000^2 px)", data_case(lambda d: with_bad(d, lambda c: png_bomb(c / "x.png"))))

    def all_bad(d: Path) -> str:
        for c in ("a", "b"):
            (d / "bad" / c).mkdir(parents=True)
            (d / "bad" / c / "x.png").write_bytes(b"not a png")
        return f"folder:{d / 'bad'}"

    add("data", "every image unreadable (--bad-images skip)", data_case(all_bad, "--bad-images", "skip"))

    def one_image(d: Path) -> str:
        (d / "one" / "a").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(d / "one" / "a" / "x.png")
        return f"folder:{d / 'one'}"

    add("data", "a single image (nothing left to train on)", data_case(one_image))
    add("data", "unknown dataset 'imagenet'", data_case(lambda d: "imagenet"))
    add("data", "fashion_mnist missing under --data-root",
        data_case(lambda d: (d / "empty_root").mkdir() or "fashion_mnist", "--data-root", "EMPTY"))

    def truncated_mnist(d: Path) -> str:
        raw = d / "root" / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                  "t10k-labels-idx1-ubyte"):
            (raw / n).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 10)
        return "mnist"

    add("data", "MNIST files truncated", data_case(truncated_mnist, "--data-root", "ROOT"))

    # -- sampling arguments -------------------------------------------------------------------------------
    def sample_case(*flags: str):
        return lambda d: (["sample", str(base), "--device", "cpu", *flags], base)

    for flags in (("--sampler", "foo"), ("--steps", "0"), ("--steps", "5000"), ("--n", "0"), ("--classes", "zebra"),
                  ("--classes", "99"), ("--cfg-interval", "a,b"), ("--cfg-interval", "5,1"), ("--batch-size", "0"),
                  ("--device", "cuda"), ("--device", "nonsense"), ("--steps", "abc"), ("--weights", "best")):
        add("sample", f"sample {' '.join(flags)}", sample_case(*flags))
    add("sample", "sample a path that does not exist", lambda d: (["sample", str(d / "none")], d))

    for flags in (("--n", "nan"), ("--n", "-1"), ("--n", "10000000000"), ("--seed", "-1"), ("--cfg", "nan"),
                  ("--cfg", "inf"), ("--eta", "2"), ("--batch-size", ""), ("--candidates", "0"), ("--steps", "1e3")):
        add("flags", f"sample {' '.join(flags) if flags[1] else flags[0] + ' (empty)'}", sample_case(*flags))

    # -- every other command's flags: out-of-range numbers and unusable paths --------------------------------
    def command_case(*argv: str):
        return lambda d: ([a.replace("BASE", str(base)).replace("CASE", str(d)) for a in argv], d)

    for argv in (("eval", "BASE", "--n", "1"), ("eval", "BASE", "--kid-subsets", "0"), ("eval", "BASE", "--ref-n", "-5"),
                 ("eval", "BASE", "--prc-k", "nan"), ("viz", "grid", "BASE", "--n", "0"), ("viz", "trajectory", "BASE", "--every", "-2"),
                 ("viz", "forward", "--dataset", "mnist", "--frames", "inf"), ("viz", "curves", "BASE", "--smoothing", "1.5"),
                 ("viz", "histogram", "BASE", "--bins", "100000"), ("report", "BASE", "--n", "0"),
                 ("classifier", "train", "--dataset", "mnist", "--epochs", "0"), ("classifier", "train", "--dataset", "mnist", "--lr", "nan"),
                 ("demo", "--minutes", "-1"), ("demo", "--per-class", "0"), ("sweep", "CASE/none.json", "--n", "0"),
                 ("autoencoder", "eval", "BASE", "--n", "-1"), ("autoencoder", "train", "--kl-weight", "nan"),
                 ("autoencoder", "train", "--disc-start", "-1"), ("autoencoder", "train", "--channel-mult", "1,2,2,2,2,2"),
                 ("train", "--aux-max-t", "2"), ("train", "--perceptual-weight", "0.1")):
        add("flags", " ".join(a.replace("BASE", "RUN").replace("CASE/", "") for a in argv), command_case(*argv))
    for argv in (("sample", "BASE", "--n", "1", "--out", "/proc/nope"), ("sample", "BASE", "--n", "1", "--out", "CASE/file.txt"),
                 ("export", "BASE", "--out", "/proc/nope"), ("viz", "curves", "BASE", "--out", "/proc/nope/c.png"),
                 ("eval", "--images", "CASE/file.txt", "--dataset", "fashion_mnist"), ("eval", "--images", "CASE/nowhere", "--dataset", "mnist"),
                 ("sample", "BASE", "--critic", "CASE/nowhere", "--rerank", "classifier"),
                 ("eval", "BASE", "--clip", "ViT-B-32:CASE/nowhere.pt"), ("train", "--aux-net", "vgg19:CASE/nowhere.pth", "--perceptual-weight", "0.1")):
        def prepare(d, argv=argv):
            (d / "file.txt").write_text("a file where a folder is expected")
            return command_case(*argv)(d)
        add("paths", " ".join(a.replace("BASE", "RUN").replace("CASE/", "") for a in argv), prepare)

    # -- eval --images: files that cannot be compared -----------------------------------------------------
    def images_case(build: Callable[[Path], None], dataset: str = "fashion_mnist"):
        def prepare(d: Path):
            (d / "imgs" / "0").mkdir(parents=True)
            build(d / "imgs" / "0")
            return ["eval", "--images", str(d / "imgs"), "--dataset", dataset, "--ref-n", "50", "--no-inception"], d
        return prepare

    add("images", "colour PNG for a grayscale dataset",
        images_case(lambda c: Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(c / "x.png")))
    add("images", "16-bit PNG", images_case(lambda c: Image.fromarray(np.full((32, 32), 40000, dtype=np.uint16)).save(c / "x.png")))
    add("images", "text file named .png", images_case(lambda c: (c / "x.png").write_text("not an image")))
    add("images", "decompression-bomb PNG header", images_case(lambda c: png_bomb(c / "x.png")))
    add("images", "only non-image files", images_case(lambda c: (c / "notes.txt").write_text("hello")))

    # -- latent diffusion: a missing, changed or corrupt autoencoder ----------------------------------------
    def latent_case(damage: Callable[[Path], None], command: str = "sample"):
        def prepare(d: Path):
            ae, run = d / "ae", d / "latent"
            shutil.copytree(LATENT_AE, ae)
            shutil.copytree(LATENT_RUN, run)
            meta_path = latest(run) / "meta.json"
            meta = json.loads(meta_path.read_text())
            meta["latent"]["autoencoder"]["path"] = str(latest(ae))
            meta_path.write_text(json.dumps(meta))
            damage(latest(ae))
            argv = ["sample", str(run), "--n", "1", "--steps", "2"] if command == "sample" else \
                ["train", *TINY, "--dataset", f"folder:{data}", "--autoencoder", str(ae), "--steps", "1", "--run-dir", str(d / "new")]
            return argv, run
        return prepare

    add("latent", "latent model, its autoencoder deleted", latent_case(lambda c: shutil.rmtree(c)))
    add("latent", "latent model, its autoencoder's weights changed",
        latent_case(lambda c: (c / "ema.safetensors").write_bytes((c / "ema.safetensors").read_bytes()[:-8] + bytes(8))))
    add("latent", "latent model, its autoencoder's weights truncated", latent_case(lambda c: truncate(c / "ema.safetensors")))
    add("latent", "train on a corrupt autoencoder", latent_case(lambda c: truncate(c / "ema.safetensors"), "train"))
    add("latent", "train on an autoencoder of another resolution",
        latent_case(lambda c: edit_json(c / "meta.json", lambda m: m["config"]["data"].update(resolution=16)), "train"))

    # -- a full disk: a resumed run whose next checkpoint does not fit ---------------------------------------
    add("disk", "resume on a full tmpfs (real ENOSPC), new checkpoint folder",
        lambda d: (resume(more_steps(d / "fs" / "run")), d / "fs" / "run"), mount_kb=1)
    add("disk", "finished run re-saves its last step on a full tmpfs (real ENOSPC)",
        lambda d: (resume(d / "fs" / "run"), d / "fs" / "run"), mount_kb=1)
    add("disk", "resume with RLIMIT_FSIZE 64 KiB (real EFBIG)", run_case(more_steps, resume), rlimit_fsize=64 * 1024)
    patch_write = ("import builtins, errno, io\n"
                   "_open = builtins.open\n"
                   "class Full:\n"
                   "    def __init__(s, f): s.f = f\n"
                   "    def write(s, b): s.f.write(b[:100]); raise OSError(errno.ENOSPC, 'No space left on device')\n"
                   "    def __getattr__(s, n): return getattr(s.f, n)\n"
                   "    def __enter__(s): return s\n"
                   "    def __exit__(s, *a): s.f.close()\n"
                   "def fake_open(file, mode='r', *a, **k):\n"
                   "    f = _open(file, mode, *a, **k)\n"
                   "    return Full(f) if MATCH(str(file), mode) else f\n"
                   "builtins.open = io.open = fake_open\n")
    for target, match in (("state.pt", "lambda f, m: 'w' in m and f.endswith('/state.pt')"),
                          ("ema.safetensors", "lambda f, m: 'w' in m and f.endswith('/ema.safetensors')"),
                          ("checkpoints/latest", "lambda f, m: 'w' in m and '/.latest.' in f"),
                          ("config.json", "lambda f, m: 'w' in m and '/.config.json.' in f"),
                          ("log.jsonl", "lambda f, m: 'a' in m and f.endswith('/log.jsonl')"),
                          ("the sample grid PNG", "lambda f, m: 'w' in m and '/samples/' in f")):
        add("disk", f"resume, write of {target} fails with ENOSPC (patched open)", run_case(more_steps, resume),
            wrapper=f"MATCH = {match}\n" + patch_write)

    # -- numerics -------------------------------------------------------------------------------------
    add("numerics", "lr 1e30: every step non-finite (--max-bad-steps 3)",
        lambda d: (train_argv(data, d / "new", "--lr", "1e30", "--max-bad-steps", "3", "--checkpoint-every", "1",
                              steps=50), d))
    return cases


# -- running ------------------------------------------------------------------------------------------
def run_case(case: Case, d: Path, env: dict, timeout: float) -> dict:
    mounted = None
    if case.mount_kb:
        fs = d / "fs"
        fs.mkdir()
        need_kb = sum(p.stat().st_size for p in BASE_KEEP1.rglob("*") if p.is_file()) // 1024 + 300
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={need_kb}k", "tmpfs", str(fs)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            return {"skipped": f"cannot mount a tmpfs ({r.stderr.strip()[:60]})"}
        mounted = fs
        shutil.copytree(BASE_KEEP1, fs / "run")
    try:
        argv, watch = case.prepare(d)
        argv = [a.replace("EMPTY", str(d / "empty_root")).replace("ROOT", str(d / "root")) if a in ("EMPTY", "ROOT")
                else a for a in argv]
        before = snapshot(watch)
        before_bytes = {rel: (watch / rel).read_bytes() for rel in before
                        if rel.endswith(("log.jsonl", "checkpoints/latest"))}
        cmd = [PY, "-c", case.wrapper + "import sys\nfrom largo.cli import main\nsys.exit(main())", *argv] \
            if case.wrapper else [PY, "-m", "largo", *argv]

        def limit():
            if case.rlimit_fsize:
                resource.setrlimit(resource.RLIMIT_FSIZE, (case.rlimit_fsize, case.rlimit_fsize))

        t0 = time.time()
        try:
            p = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", str(e.stdout or ""), str(e.stderr or "")
        lines = [ln.replace(f"{d}/", "") for ln in err.splitlines() if ln.strip()]  # paths relative to the case
        res = {"rc": rc, "seconds": time.time() - t0,
               "traceback": "Traceback (most recent call last)" in out + err,
               "one_line": len(lines) == 1 and lines[0].startswith("largo: error:"),
               "unchanged": unchanged(watch, before, before_bytes),
               "message": lines[-1] if lines else "(no stderr)", "stderr": err}
        if case.marker:
            res["payload_ran"] = (d / "PAYLOAD_RAN").exists()
        if case.mount_kb or case.category == "disk":
            left = list((watch / "checkpoints").glob(".step_*")) if (watch / "checkpoints").is_dir() else []
            res["partial_left"] = len(left)
        res["ok"] = (rc not in (0, "timeout") and not res["traceback"] and res["one_line"] and res["unchanged"]
                     and not res.get("payload_ran") and not res.get("partial_left"))
        return res
    finally:
        if mounted is not None:
            subprocess.run(["umount", str(mounted)], capture_output=True)


BASE_KEEP1: Path = Path()
LATENT_AE: Path = Path()  # a tiny autoencoder run and a latent run on it (made once in main)
LATENT_RUN: Path = Path()


def main() -> int:
    global BASE_KEEP1, LATENT_AE, LATENT_RUN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="default: a fresh temporary folder, removed afterwards")
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    ap.add_argument("--markdown", type=Path, help="also write the table here")
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--verbose", action="store_true", help="print each case's stderr")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="largo-bad-input-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LARGO_CACHE": str(work / "cache"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    t_start = time.time()

    # Fixtures: a folder dataset and three small runs (two checkpoints; one checkpoint; another model width).
    data = make_folder(work / "data")
    base, base1, other = work / "base", work / "base_keep1", work / "other_model"
    for run, extra in ((base, ["--checkpoint-every", "2"]), (base1, ["--checkpoint-every", "4", "--keep", "1"]),
                       (other, ["--checkpoint-every", "4", "--base-channels", "64", "--num-heads", "2"])):
        if not (run / "config.json").exists():
            r = subprocess.run([PY, "-m", "largo", *train_argv(data, run, *extra)], cwd=work, env=env,
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                return 1
    BASE_KEEP1 = base1
    LATENT_AE, LATENT_RUN = work / "latent_ae", work / "latent_run"
    ae_flags = ["--dataset", f"folder:{data}", "--resolution", "8", "--base-channels", "32", "--channel-mult", "1,2",
                "--num-res-blocks", "1", "--latent-channels", "2", "--batch-size", "4", "--steps", "2",
                "--disc-weight", "0", "--device", "cpu", "--quiet"]
    for argv in (["autoencoder", "train", *ae_flags, "--run-dir", str(LATENT_AE)],
                 train_argv(data, LATENT_RUN, "--autoencoder", str(LATENT_AE), "--clip-x0", "false", steps=2)):
        if not (Path(argv[argv.index("--run-dir") + 1]) / "config.json").exists():
            r = subprocess.run([PY, "-m", "largo", *argv], cwd=work, env=env, capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                return 1

    cases = [c for c in build_cases(base, data, other) if args.only in c.name]
    rows = []
    for i, case in enumerate(cases, 1):
        d = work / "cases" / f"{i:03d}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        res = run_case(case, d, env, args.timeout)
        case.result = res
        status = "skip" if "skipped" in res else ("ok" if res["ok"] else "FAIL")
        print(f"[{i:3d}/{len(cases)}] {status:4s} {case.category:10s} {case.name}", file=sys.stderr, flush=True)
        if args.verbose or status == "FAIL":
            print("      " + (res.get("stderr") or res.get("skipped", "")).strip().replace("\n", "\n      "),
                  file=sys.stderr)
        rows.append((i, case, res))

    ran = [r for r in rows if "skipped" not in r[2]]
    tb = sum(r[2]["traceback"] for r in ran)
    fails = [r for r in ran if not r[2]["ok"]]
    table = ["| # | category | malformed input | exit | traceback | one `largo: error:` line | earlier files unchanged | stderr |",
             "|---|---|---|---|---|---|---|---|"]
    for i, case, res in rows:
        if "skipped" in res:
            table.append(f"| {i} | {case.category} | {case.name} | – | – | – | – | skipped: {res['skipped']} |")
            continue
        msg = res["message"].replace("|", "\\|")
        msg = msg if len(msg) <= 150 else msg[:147] + "…"
        extra = " (payload did not run)" if case.marker and not res.get("payload_ran") else \
            (" **payload ran**" if res.get("payload_ran") else "")
        table.append(f"| {i} | {case.category} | {case.name} | {res['rc']} | {'**yes**' if res['traceback'] else 'no'} | "
                     f"{'yes' if res['one_line'] else '**no**'} | {'yes' if res['unchanged'] else '**no**'}{extra} | "
                     f"`{msg}` |")
    summary = (f"\n{len(ran)} malformed inputs, {len(rows) - len(ran)} skipped; tracebacks: {tb}; "
               f"passing every check: {len(ran) - len(fails)}/{len(ran)}; failing: "
               f"{', '.join(str(i) for i, _, _ in fails) or 'none'}; {time.time() - t_start:.0f} s")
    text = "\n".join(table) + "\n" + summary + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if not fails else 1


if __name__ == "__main__":
    sys.exit(main())
