"""The zoo's one shared tokenizer: byte-level BPE over the union of the training splits.

Saved in Hugging Face format so `AutoTokenizer.from_pretrained(dir)` loads it.
Encoding adds `<s>` in front (as every training document starts with it), so a
prompt tokenized by the engine looks like the start of a training document.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
SAMPLE_CHARS_PER_DOMAIN = 1_000_000  # BPE statistics need far less than the whole corpus


def train_tokenizer(texts_by_domain: dict[str, Iterable[str]], vocab_size: int, out_dir: Path):
    """Train, save to `out_dir` and return a `PreTrainedTokenizerFast`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def sample():
        # An equal character budget per domain, so small domains still get their own merges.
        for texts in texts_by_domain.values():
            used = 0
            for text in texts:
                if used >= SAMPLE_CHARS_PER_DOMAIN:
                    break
                yield text
                used += len(text)

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    core.train_from_iterator(sample(), trainer=trainer)
    bos_id = core.token_to_id(BOS)
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=512,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    return tok
