"""Teacher logits on disk: computed once, reused by every later `distill`, resumable, checked.

A cache folder is named by a hash of everything its logits depend on (teacher identity, data
fingerprints, template, max length, labels), so a changed teacher or data set can never be served
stale logits. Logits are written shard by shard (each shard atomically), so an interrupted `cache`
keeps its finished shards and computes only the rest. The merged files carry SHA-256 checksums in
`meta.json`; a mismatch is reported and the cache is rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from llmneo.atomic import atomic_path, sha256_file, write_text_atomic

__all__ = ["CacheCorrupt", "CacheKey", "CachedLogits", "LogitCache"]

SPLITS = ("train", "dev")  # always cached; a transfer set adds "transfer"


class CacheCorrupt(RuntimeError):
    """The cache on disk does not match its own checksums or key."""


@dataclass(frozen=True)
class CacheKey:
    teacher_id: str
    train_fingerprint: str
    dev_fingerprint: str
    kind: str
    template: str
    max_length: int
    labels: tuple[str, ...]
    transfer_fingerprint: str = ""  # set for the cache of a transfer set, which holds that split alone
    hidden_layers: tuple[int, ...] = ()  # set for pooled hidden states of these layers instead of logits
    dev_only: bool = False  # gold logits for dev alone: a run that distils no gold row (loss.alpha 0)
    validation_fingerprint: str = ""  # set when a validation split is carved from train: cached beside dev

    def splits(self) -> tuple[str, ...]:
        """A gold cache holds train and dev; a transfer-set cache holds only the transfer split, so the
        gold logits are shared by every run on the same data with or without a transfer set. Hidden
        states are trained on, never evaluated: their gold cache holds train alone. A run that never
        distils its gold rows needs the teacher on dev alone (its accuracy, the student's agreement)."""
        if self.transfer_fingerprint:
            return ("transfer",)
        if self.hidden_layers:
            return ("train",)
        evaluated = ("validation",) if self.validation_fingerprint else ()
        return ("dev", *evaluated) if self.dev_only else (*SPLITS, *evaluated)

    def as_dict(self) -> dict:
        """The key as stored in meta.json; a logit key keeps the digest it had before these fields existed."""
        fields = asdict(self) | {"labels": list(self.labels), "hidden_layers": list(self.hidden_layers)}
        for name in ("transfer_fingerprint", "hidden_layers", "dev_only", "validation_fingerprint"):
            if not fields[name]:
                fields.pop(name)
        return fields

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class CachedLogits:
    train: np.ndarray | None  # (N_train, C) teacher logits, in the order of the training texts
    dev: np.ndarray | None  # (N_dev, C)
    meta: dict
    transfer: np.ndarray | None = None  # (N_transfer, C) for the unlabelled transfer set, when there is one
    validation: np.ndarray | None = None  # (N_validation, C) when data.validation_size carves one
    # A hidden-state cache stores (N, L * H) pooled states in the same files and fields.

    @property
    def teacher_dev_metrics(self) -> dict:
        return self.meta.get("teacher_dev_metrics", {})

    @property
    def teacher_validation_metrics(self) -> dict:
        return self.meta.get("teacher_validation_metrics", {})


class LogitCache:
    """One cache folder: `train.safetensors`, `dev.safetensors`, `meta.json`; `shards/` while building."""

    def __init__(self, root: str | Path, key: CacheKey):
        self.key = key
        self.folder = Path(root) / key.digest()

    @property
    def meta_path(self) -> Path:
        return self.folder / "meta.json"

    def exists(self) -> bool:
        return self.meta_path.is_file()

    @property
    def lock_path(self) -> Path:
        """A hidden file beside the cache folder (which is written atomically, so cannot hold its own lock)."""
        return self.folder.with_name(f".{self.folder.name}.lock")

    @contextmanager
    def exclusive(self, enabled: bool = True) -> Iterator[None]:
        """Hold the cache's lock file while checking and building it. Two processes of one machine that need
        the same cache (arms of `compare --jobs 2`) would otherwise both run the teacher over the same texts;
        the second waits and then reads what the first wrote. Off for a distributed build, whose ranks
        build their shards together."""
        if not enabled:
            yield
            return
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"[cache] another process is building {self.folder}: waiting for it", flush=True)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self) -> CachedLogits:
        """Read and verify the cache; raises CacheCorrupt on any mismatch."""
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CacheCorrupt(f"{self.meta_path}: unreadable ({error})") from None
        if meta.get("key") != self.key.as_dict():
            raise CacheCorrupt(f"{self.folder}: key in meta.json does not match the requested key")
        arrays = {}
        for split in self.key.splits():
            path = self.folder / f"{split}.safetensors"
            if not path.is_file() or sha256_file(path) != meta["checksums"].get(split):
                raise CacheCorrupt(f"{path}: checksum mismatch or missing file")
            arrays[split] = load_file(path)["logits"]
        return CachedLogits(arrays.get("train"), arrays.get("dev"), meta, arrays.get("transfer"),
                            arrays.get("validation"))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def shard_path(self, split: str, index: int) -> Path:
        return self.folder / "shards" / f"{split}-{index:05d}.safetensors"

    def build(self, compute_logits: Callable[[Sequence[str], str], np.ndarray], texts: dict[str, Sequence[str]],
              shard_size: int, rank: int = 0, world_size: int = 1,
              on_shard: Callable[[str, int], None] | None = None) -> list[Path]:
        """Compute the shards this rank owns that are not on disk yet; returns the shards written.

        Shard i of each split belongs to rank i % world_size, so N processes split the work with no
        coordination beyond the file system; finished shards are skipped, which is what resumes an
        interrupted run.
        """
        written = []
        for split in self.key.splits():
            split_texts = texts[split]
            count = (len(split_texts) + shard_size - 1) // shard_size
            for index in range(count):
                path = self.shard_path(split, index)
                if index % world_size != rank or path.is_file():
                    continue
                chunk = split_texts[index * shard_size:(index + 1) * shard_size]
                logits = compute_logits(chunk, f"teacher logits {split} {index + 1}/{count}")
                with atomic_path(path) as temp:
                    save_file({"logits": np.ascontiguousarray(logits, dtype=np.float32)}, str(temp))
                written.append(path)
                if on_shard:
                    on_shard(split, index)
        return written

    def missing_shards(self, sizes: dict[str, int], shard_size: int) -> list[Path]:
        return [self.shard_path(split, index) for split in self.key.splits()
                for index in range((sizes[split] + shard_size - 1) // shard_size)
                if not self.shard_path(split, index).is_file()]

    def merge(self, sizes: dict[str, int], shard_size: int, extra_meta: dict) -> None:
        """Join the shards into one file per split, write checksums and meta, drop the shards."""
        missing = self.missing_shards(sizes, shard_size)
        if missing:
            raise CacheCorrupt(f"{self.folder}: cannot merge, {len(missing)} shards missing (first: {missing[0]})")
        checksums = {}
        for split in self.key.splits():
            count = (sizes[split] + shard_size - 1) // shard_size
            logits = np.concatenate([load_file(self.shard_path(split, i))["logits"] for i in range(count)])
            if len(logits) != sizes[split]:
                raise CacheCorrupt(f"{self.folder}: {split} has {len(logits)} rows, expected {sizes[split]}")
            target = self.folder / f"{split}.safetensors"
            with atomic_path(target) as temp:
                save_file({"logits": logits}, str(temp))
            checksums[split] = sha256_file(target)
        meta = {"key": self.key.as_dict(), "digest": self.key.digest(),
                "sizes": sizes, "checksums": checksums, **extra_meta}
        write_text_atomic(self.meta_path, json.dumps(meta, indent=2))
        shutil.rmtree(self.folder / "shards", ignore_errors=True)
