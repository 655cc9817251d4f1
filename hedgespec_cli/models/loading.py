"""Load a target and a pool of drafters from local Hugging Face checkpoints.

Nothing here downloads: a path that is not a local checkpoint directory is a
`CheckpointError`. Every drafter must speak the target's vocabulary, checked
at load time, because the engine compares token ids across models.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from hedgespec_cli.config import DEFAULT_KIND, ModelSpec
from hedgespec_cli.errors import CheckpointError, ConfigError, VocabMismatchError
from hedgespec_cli.models.causal_lm import CausalLM

# Our own progress bars own the terminal; transformers' per-load bars would interleave.
hf_logging.disable_progress_bar()

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEVICES = ("cpu", "cuda", "auto")


@dataclass
class Pool:
    """A target, its drafters (index order is the selectors' arm order) and the shared tokenizer."""

    target: CausalLM
    drafters: list[CausalLM]
    tokenizer: PreTrainedTokenizerBase
    specs: list[ModelSpec]  # the drafters' specs, as loaded (Hub ids resolved, kinds detected)
    target_spec: ModelSpec | None = None
    router: Any = None  # the profile's PromptClassifier (selection/classifier.py), None without one

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    @property
    def domains(self) -> tuple[str | None, ...]:
        return tuple(s.domain for s in self.specs)

    def cuda_devices(self) -> list[torch.device]:
        """The CUDA devices holding any of the pool's weights (several when the target is sharded)."""
        models = [self.target.model, *(getattr(d, "model", d) for d in self.drafters)]
        found = {p.device for m in models for p in m.parameters() if p.device.type == "cuda"}
        return sorted(found, key=lambda d: d.index or 0)

    def memory(self) -> dict:
        """Weights (MiB) and KV cache cost (KiB per cached token) of the target and each drafter."""
        def entry(model) -> dict:
            weights = sum(p.numel() * p.element_size() for p in model.parameters())
            cfg = model.config
            layers = getattr(cfg, "num_hidden_layers", 1)
            kv_heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
            head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            dtype_bytes = next(model.parameters()).element_size()
            return {
                "weights_mib": weights / 2**20,
                "kv_kib_per_token": 2 * layers * kv_heads * head_dim * dtype_bytes / 1024,
            }

        return {
            "target": entry(self.target.model),
            "drafters": {s.name: entry(getattr(d, "model", d)) for s, d in zip(self.specs, self.drafters)},
        }


def load_pool(
    target: ModelSpec,
    drafters: list[ModelSpec],
    *,
    device: str = "cpu",
    dtype: str = "float32",
    drafter_dtype: str | None = None,
    tokenizer_path: Path | None = None,
) -> Pool:
    """Load everything a run needs; raises with a fix-it message on any problem.

    drafter_dtype: the drafters' weights (default: `dtype`); the target's
    dtype alone decides the output, so any drafter dtype stays lossless.
    """
    torch_dtype = _resolve_dtype(dtype)
    drafter_torch_dtype = _resolve_dtype(drafter_dtype) if drafter_dtype else torch_dtype
    placement = _resolve_device(device)
    target, drafters = resolve_specs(target, drafters)
    for spec in drafters:  # before the target loads: a typo in a kind costs no load
        if spec.kind not in LOADERS:
            raise ConfigError(f"drafter {spec.name!r} has kind {spec.kind!r}; supported kinds: {', '.join(LOADERS)}")
    tokenizer = (load_tokenizer(tokenizer_path, "tokenizer") if tokenizer_path
                 else load_tokenizer(target.path, target.name, gguf_file=target.gguf_file))
    target_lm = CausalLM(target.name, _load_model(target, torch_dtype, placement))
    # Drafters are small: they live on the target's first device, never sharded.
    drafter_device = target_lm.device
    pool_drafters = []
    for spec in drafters:
        drafter = LOADERS[spec.kind].load(spec, target_lm, drafter_torch_dtype, drafter_device)
        check_compatible(target_lm, tokenizer, drafter, spec)
        pool_drafters.append(drafter)
    return Pool(target_lm, pool_drafters, tokenizer, list(drafters), target)


def resolve_specs(target: ModelSpec, drafters: list[ModelSpec]) -> tuple[ModelSpec, list[ModelSpec]]:
    """Hub ids -> cached snapshot paths; a drafter of the default kind whose checkpoint a kind
    recognises (an EAGLE-3 head, in EAGLE's or speculators' format) is loaded as that kind."""
    from dataclasses import replace

    from hedgespec_cli.models.hub import resolve_spec

    target = resolve_spec(target)
    out = []
    for spec in drafters:
        spec = resolve_spec(spec)
        if spec.kind == DEFAULT_KIND:
            found = next((k.name for k in LOADERS.values() if k.detect is not None and k.detect(spec.path)), None)
            spec = replace(spec, kind=found or spec.kind)
        out.append(spec)
    return target, out


def _load_lm(spec: ModelSpec, target: CausalLM, dtype: torch.dtype, device: torch.device) -> CausalLM:
    """A causal LM on the transformers path (an EAGLE-3 head under kind `lm` was re-kinded by resolve_specs)."""
    return CausalLM(spec.name, _load_model(spec, dtype, {"device_map": None}).to(device))


def _is_eagle3(path: Path) -> bool:
    from hedgespec_cli.models.eagle3 import is_eagle3_checkpoint

    return is_eagle3_checkpoint(path)


def _load_eagle3(spec: ModelSpec, target: CausalLM, dtype: torch.dtype, device: torch.device) -> Any:
    """An EAGLE-3 head over this target: its embeddings, its hidden size."""
    from hedgespec_cli.models.eagle3 import load_eagle3

    head = load_eagle3(spec.path, target.model.get_input_embeddings(), dtype=dtype, device=device)
    head.name, head.vocab_size = spec.name, head.config.vocab_size
    # No hard context limit: the head's rotary embedding is computed for any position (EAGLE's released
    # heads say 2048, their targets 128k). The engine warns past the length it was trained on.
    head.max_positions = None
    head.trained_positions = head.config.max_position_embeddings
    head.config.feature_layers(target.model.config.num_hidden_layers)  # ids the target has, or a clear error
    want = target.model.config.hidden_size
    if head.config.target_hidden_size != want:
        raise CheckpointError(
            f"EAGLE-3 head {spec.name!r} was trained on a target with hidden size "
            f"{head.config.target_hidden_size}, this target has {want}; use the head trained for this target"
        )
    return head


@dataclass(frozen=True)
class DrafterLoader:
    """How one `kind:` of drafter loads; decoding/kinds.py adds how it drafts and stacks (KINDS).

    load(spec, target, dtype, device) -> the drafter, on the target's first device.
    detect(path): True when the checkpoint is of this kind although the profile
    lists it under the default kind (None: never detected).
    """

    name: str
    load: Callable[[ModelSpec, CausalLM, torch.dtype, torch.device], Any]
    detect: Callable[[Path], bool] | None = None


# The profile's `kind:` of a drafter -> how it loads. Every kind has its entry in decoding/kinds.py KINDS too.
LOADERS = {k.name: k for k in (DrafterLoader("lm", _load_lm), DrafterLoader("eagle3", _load_eagle3, _is_eagle3))}


def load_tokenizer(path: Path, owner: str, *, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    _require_checkpoint_dir(path, owner)
    try:
        extra = {"gguf_file": gguf_file} if gguf_file else {}  # a GGUF file carries its tokenizer
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, **extra)
    except (OSError, ValueError) as err:
        raise CheckpointError(
            f"no usable tokenizer for {owner!r} in {path} ({_first_line(err)}); "
            "save one there with tokenizer.save_pretrained(DIR) or set the profile's tokenizer path"
        ) from None


def check_compatible(target: CausalLM, tokenizer: PreTrainedTokenizerBase, drafter, spec: ModelSpec) -> None:
    """Drafter and target must map the same ids to the same tokens."""
    if drafter.vocab_size != target.vocab_size:
        raise VocabMismatchError(
            f"drafter {spec.name!r} has vocab size {drafter.vocab_size}, the target "
            f"{target.vocab_size}; use a drafter trained with the target's tokenizer"
        )
    if not _has_tokenizer(spec.path):
        return  # weights-only checkpoint: the logit width is all we can check
    theirs = load_tokenizer(spec.path, spec.name)
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        if getattr(theirs, attr) != getattr(tokenizer, attr):
            raise VocabMismatchError(
                f"drafter {spec.name!r} has {attr}={getattr(theirs, attr)}, the target "
                f"{getattr(tokenizer, attr)}; use a drafter trained with the target's tokenizer"
            )
    ours, other = tokenizer.get_vocab(), theirs.get_vocab()
    differing = sorted(
        (i, tok) for tok, i in ours.items() if other.get(tok) != i
    )
    if differing or len(ours) != len(other):
        sample = ", ".join(f"{i}:{tok!r}" for i, tok in differing[:5])
        raise VocabMismatchError(
            f"drafter {spec.name!r} tokenizer differs from the target's "
            f"({len(other)} vs {len(ours)} tokens; target ids mapped differently: {sample or 'none'}); "
            "use a drafter trained with the target's tokenizer"
        )


def _load_model(spec: ModelSpec, dtype: torch.dtype, placement: dict):
    _require_checkpoint_dir(spec.path, spec.name)
    extra = {}
    if spec.gguf_file:  # de-quantised by transformers: the model decoded is exactly that de-quantised one
        _check_gguf(spec)
        extra["gguf_file"] = spec.gguf_file
    elif not (spec.path / "config.json").is_file():
        raise CheckpointError(
            f"{spec.name!r}: {spec.path} is not a checkpoint (no config.json); "
            "point the profile at a directory written by save_pretrained"
        )
    device_map = placement.get("device_map")
    try:
        with _held_hf_logs() as held:
            model = AutoModelForCausalLM.from_pretrained(
                str(spec.path), dtype=dtype, local_files_only=True, device_map=device_map, **extra
            )
    # RuntimeError: weights of another shape; SafetensorError: a truncated, empty or corrupted file.
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        mismatch = _first_mismatch(held)
        if mismatch or any(s in str(err) for s in ("mismatched_sizes", "size mismatch")):  # transformers' wording
            raise CheckpointError(
                f"cannot load {spec.name!r} from {spec.path}: its config.json does not match its weights' "
                f"shapes{f' ({mismatch})' if mismatch else ''}; restore the config.json saved with these weights"
            ) from None
        raise CheckpointError(
            f"cannot load {spec.name!r} from {spec.path}: {_first_line(err)}; the checkpoint is damaged or "
            "incomplete, save it again (save_pretrained) or copy it anew"
        ) from None
    if device_map is None and placement.get("device"):
        model = model.to(placement["device"])
    return model


@contextmanager
def _held_hf_logs() -> Iterator[list[logging.LogRecord]]:
    """Hold transformers' log records while a model loads.

    A load that fails is reported by our one error line; transformers would
    print a multi-line coloured load report before it. So the records are
    held: replayed through transformers' own handlers when the load succeeds
    (its warnings still reach the user), dropped when it fails.
    """
    root = hf_logging.get_logger()  # the library's root logger; module loggers propagate to it
    held: list[logging.LogRecord] = []

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    handlers, propagate = root.handlers[:], root.propagate
    root.handlers, root.propagate = [_Hold()], False
    try:
        yield held
    except BaseException:
        root.handlers, root.propagate = handlers, propagate
        raise
    root.handlers, root.propagate = handlers, propagate
    for record in held:
        root.handle(record)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MISMATCH = re.compile(
    r"^(.+?)\s*\|\s*MISMATCH\s*\|.*ckpt: torch\.Size\((\[[^]]*\])\) vs model:\s*torch\.Size\((\[[^]]*\])\)"
)


def _first_mismatch(records: list[logging.LogRecord]) -> str | None:
    """'e.g. NAME: weights [..], config [..]' from transformers' held load report (None: no mismatch)."""
    for record in records:
        for line in _ANSI.sub("", record.getMessage()).splitlines():
            if m := _MISMATCH.match(line.strip()):
                name, ckpt, model = m.groups()
                return f"e.g. {name}: weights {ckpt}, config {model}"
    return None


def _check_gguf(spec: ModelSpec) -> None:
    """A GGUF checkpoint's file is there and transformers can read it (the `gguf` package: extra `smollm2`)."""
    file = spec.path / spec.gguf_file
    if not file.is_file():
        raise CheckpointError(f"{spec.name!r}: GGUF file {file} does not exist; fix gguf_file or the path")
    for module, extra in (("gguf", "smollm2"), ("accelerate", "smollm2")):
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"{spec.name!r} is a GGUF checkpoint, which transformers reads with the {module!r} "
                              f"package; pip install 'hedgespec-cli[{extra}]'")


def _resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _resolve_device(device: str) -> dict:
    """Placement kwargs: a device for single-device runs, device_map for `auto`."""
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA device is visible; use --device cpu")
    if device == "auto":
        if not torch.cuda.is_available():
            raise ConfigError("device 'auto' shards the target over the visible GPUs, and none is visible; "
                              "use --device cpu")
        if importlib.util.find_spec("accelerate") is None:
            raise ConfigError(
                "device 'auto' shards the target with accelerate, which is not installed; "
                "pip install 'hedgespec-cli[multi-gpu]' or use --device cuda/cpu"
            )
        # transformers places layers over the visible GPUs.
        return {"device_map": "auto"}
    return {"device": device, "device_map": None}


def _require_checkpoint_dir(path: Path, owner: str) -> None:
    if not Path(path).is_dir():
        raise CheckpointError(
            f"{owner!r}: checkpoint directory {path} does not exist; "
            "fix the path (models are never downloaded)"
        )


def _has_tokenizer(path: Path) -> bool:
    return any((Path(path) / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
