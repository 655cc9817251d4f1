"""Models: the only package that imports transformers."""

from hedgespec_cli.models.causal_lm import CausalLM, ForwardOut, KVCache
from hedgespec_cli.models.loading import ModelSpec, Pool, load_pool, load_tokenizer

__all__ = ["CausalLM", "ForwardOut", "KVCache", "ModelSpec", "Pool", "load_pool", "load_tokenizer"]
