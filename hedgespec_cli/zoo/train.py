"""Training loops for the zoo: cross-entropy pretraining (target) and distillation (drafters).

Both loops stop on a `StageBudget` (wall-clock seconds and/or a step cap) and
drive the learning rate by the stage's *progress fraction*
`max(elapsed / seconds, step / max_steps)`, so a stage stopped by time still
ends at the bottom of its cosine schedule.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OnStep = Callable[[float, dict], None]  # (progress fraction in [0, 1], stats)


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    tie_embeddings: bool


# Deep-ish target, one-layer drafters: on CPU the per-call overhead of a layer
# dominates, so depth is what makes the target expensive and the drafters cheap.
TARGET_SHAPE = ModelShape(hidden=256, layers=8, heads=4, kv_heads=4, intermediate=768,
                          tie_embeddings=False)
DRAFTER_SHAPE = ModelShape(hidden=128, layers=1, heads=2, kv_heads=2, intermediate=512,
                           tie_embeddings=True)
MAX_POSITIONS = 1024


def make_model(shape: ModelShape, tokenizer, seed: int):
    """A freshly initialised `LlamaForCausalLM` of `shape` for `tokenizer` (float32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=shape.tie_embeddings,
        rope_theta=10_000.0,
    )
    return LlamaForCausalLM(config)


def count_params(model) -> tuple[int, int]:
    """(total, non-embedding) parameter counts; tied weights are counted once."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    embedding = emb.numel() + (0 if head is emb else head.numel())
    return total, total - embedding


@dataclass(frozen=True)
class StageBudget:
    seconds: float
    max_steps: int | None = None

    def progress(self, step: int, elapsed: float) -> float:
        frac = elapsed / self.seconds if self.seconds > 0 else 1.0
        if self.max_steps is not None:
            frac = max(frac, step / max(self.max_steps, 1))
        return min(frac, 1.0)


def lr_at(frac: float, peak: float, warmup: float = 0.03, floor: float = 0.1) -> float:
    """Linear warm-up over the first `warmup` of the stage, then cosine down to `floor * peak`."""
    if frac < warmup:
        return peak * max(frac / warmup, 0.02)
    t = (frac - warmup) / (1.0 - warmup)
    return peak * (floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0))))


def _loop(model, loss_fn, sample, budget: StageBudget, peak_lr: float, on_step: OnStep) -> dict:
    """Shared optimisation loop; `sample()` gives a (B, T+1) batch, `loss_fn(model, batch)` a loss."""
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak_lr, betas=(0.9, 0.95),
    )
    start = time.perf_counter()
    step, tokens, ema = 0, 0, None
    while True:
        frac = budget.progress(step, time.perf_counter() - start)
        if frac >= 1.0:
            break
        lr = lr_at(frac, peak_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = sample().to(model.device)  # (B, T+1)
        loss = loss_fn(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += batch.shape[0] * (batch.shape[1] - 1)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        on_step(budget.progress(step, time.perf_counter() - start),
                {"step": step, "loss": ema, "lr": lr})
    model.eval()
    return {"steps": step, "tokens": tokens, "train_loss": ema,
            "wall_s": round(time.perf_counter() - start, 1)}


def _ce_loss(model, batch: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=batch[:, :-1]).logits  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


def pretrain(model, sample, budget: StageBudget, peak_lr: float, on_step: OnStep) -> dict:
    """Next-token cross-entropy on batches from `sample()`."""
    return _loop(model, _ce_loss, sample, budget, peak_lr, on_step)


def distill(student, teacher, sample, budget: StageBudget, peak_lr: float, on_step: OnStep,
            temperature: float = 1.0) -> dict:
    """Forward KL(p_teacher || q_student) over the full vocabulary at every position.

    The teacher's soft targets are computed on the fly (cheaper than caching
    4096-way distributions); `temperature` softens both sides, scaled by T^2.
    """
    teacher.eval()

    def kl_loss(model, batch):
        inputs = batch[:, :-1]
        with torch.no_grad():
            p_log = F.log_softmax(teacher(input_ids=inputs).logits / temperature, dim=-1)  # (B,T,V)
        q_log = F.log_softmax(model(input_ids=inputs).logits / temperature, dim=-1)  # (B,T,V)
        kl = F.kl_div(q_log.flatten(0, 1), p_log.flatten(0, 1), log_target=True,
                      reduction="batchmean")
        return kl * temperature**2

    return _loop(student, kl_loss, sample, budget, peak_lr, on_step)


@torch.no_grad()
def heldout_loss(model, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats) over `windows` of shape (W, T+1)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, windows.shape[0], batch_size):
        batch = windows[i:i + batch_size].to(model.device)
        logits = model(input_ids=batch[:, :-1]).logits  # (b, T, V)
        total += F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten(),
                                 reduction="sum").item()
        count += batch[:, 1:].numel()
    return total / max(count, 1)
