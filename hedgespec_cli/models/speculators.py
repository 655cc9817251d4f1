"""EAGLE-3 heads in vLLM's `speculators` format (vllm-project/speculators), read into our `Eagle3Head`.

The head is the same network as EAGLE's; only the packaging differs:

- `config.json` says `speculators_model_type: eagle3` (architectures `Eagle3Speculator`) and nests
  the decoder layer's Llama shape under `transformer_layer_config`, which speculators writes with
  transformers' `to_diff_dict` (keys equal to `LlamaConfig`'s defaults are left out, so they are
  filled back from `LlamaConfig`, as speculators' own validator does). Next to it:
  `draft_vocab_size`, `norm_before_residual` (the residual around attention is the normed
  feature), `target_hidden_size`, `eagle_aux_hidden_state_layer_ids` (the target layers fused).
- weights: the decoder layer under `layers.0.*` (EAGLE: `midlayer.*`), `embed_tokens.weight`
  usually shipped, `fc.bias` in the first releases, `d2t` / `t2d` as in EAGLE (target = draft + d2t),
  and training-only `verifier_norm` / `verifier_lm_head` copies, which drafting never reads.

Supported: one Llama decoder layer without biases (what speculators trains for Llama/Qwen targets);
anything else is a `CheckpointError` that says what is unsupported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from hedgespec_cli.errors import CheckpointError
from hedgespec_cli.models.eagle3 import ARCHITECTURES, Eagle3Config, aux_layer_ids, flag, read_weights

MODEL_TYPE = "eagle3"
# Tensors speculators saves for training only (a frozen copy of the verifier's final norm and head).
TRAINING_ONLY = ("verifier_norm.", "verifier_lm_head.")


def _raw(config: Path) -> dict[str, Any] | None:
    try:
        raw = json.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the EAGLE reader reports unreadable files with its own message
    return raw if isinstance(raw, dict) else None


def is_speculators_config(config: Path) -> bool:
    """True when config.json is a `speculators` checkpoint's (it names `speculators_model_type`)."""
    raw = _raw(config)
    return raw is not None and "speculators_model_type" in raw


def config_from_speculators(raw: dict[str, Any], source: str = "config.json") -> Eagle3Config:
    """A speculators EAGLE-3 config.json -> our validated `Eagle3Config`."""
    kind = raw.get("speculators_model_type")
    if kind != MODEL_TYPE:
        raise CheckpointError(f"{source}: speculators_model_type is {kind!r}; only {MODEL_TYPE!r} heads load here")
    layer = raw.get("transformer_layer_config")
    if not isinstance(layer, dict):
        raise CheckpointError(f"{source}: key 'transformer_layer_config' is {layer!r}; a speculators EAGLE-3 "
                              "config nests the decoder layer's Llama config there")
    model_type = layer.get("model_type", "llama")
    if model_type != "llama":
        raise CheckpointError(f"{source}: transformer_layer_config.model_type is {model_type!r}; only Llama "
                              "decoder layers are supported (the head EAGLE-3 trains for Llama and Qwen targets)")
    if flag(raw, "norm_before_fc", source):
        raise CheckpointError(f"{source}: norm_before_fc = true (speculators' gpt-oss variant) is not supported")
    from transformers import LlamaConfig

    # Fill the keys `to_diff_dict` dropped, exactly as speculators re-reads its own config.
    full = LlamaConfig(**{k: v for k, v in layer.items() if k not in ("architectures", "model_type")}).to_dict()
    for key in ("attention_bias", "mlp_bias"):
        if full.get(key):
            raise CheckpointError(f"{source}: transformer_layer_config.{key} = true is not supported "
                                  "(the EAGLE-3 Llama head has no biases in attention or MLP)")
    aux = aux_layer_ids(raw, source)
    merged = {**full, "architectures": [ARCHITECTURES[0]], "draft_vocab_size": raw.get("draft_vocab_size"),
              "eagle_aux_hidden_state_layer_ids": list(aux) if aux else None,
              # speculators' field default; vLLM assumes true when the key is absent, speculators always writes it
              "norm_before_residual": flag(raw, "norm_before_residual", source)}
    if raw.get("target_hidden_size") is not None:
        merged["target_hidden_size"] = raw["target_hidden_size"]
    if merged["eagle_aux_hidden_state_layer_ids"] is None:
        del merged["eagle_aux_hidden_state_layer_ids"]
    return Eagle3Config.from_dict(merged, source)


def state_from_speculators(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """speculators tensor names -> EAGLE's (`layers.0.` -> `midlayer.`), training-only copies dropped."""
    deeper = sorted({k.split(".")[1] for k in state if k.startswith("layers.") and not k.startswith("layers.0.")})
    if deeper:
        raise CheckpointError(f"{source}: holds decoder layers {', '.join(deeper)} after layers.0; "
                              "only single-layer EAGLE-3 heads are supported")
    if any(k.startswith("input_norm.") for k in state):
        raise CheckpointError(f"{source}: holds input_norm (norm_before_fc, speculators' gpt-oss variant), "
                              "which is not supported")
    out = {}
    for key, tensor in state.items():
        if key.startswith(TRAINING_ONLY):
            continue
        out["midlayer." + key.removeprefix("layers.0.") if key.startswith("layers.0.") else key] = tensor
    return out


def read_speculators_head(path: Path) -> tuple[Eagle3Config, dict[str, Tensor], str]:
    """Config, state dict under EAGLE's names, and the weights file's name, of a speculators head."""
    config = Path(path) / "config.json"
    raw = _raw(config)
    if raw is None:
        raise CheckpointError(f"{config}: unreadable; a speculators EAGLE-3 head needs a JSON config.json")
    cfg = config_from_speculators(raw, str(config))
    state, source = read_weights(Path(path))
    return cfg, state_from_speculators(state, source), source
