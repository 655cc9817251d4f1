"""Train EAGLE-3 heads on a target: one `generic` head on the domain mixture and one per domain.

The recipe is EAGLE-3's (SafeAILab/EAGLE `eagle/traineagle3`), scaled down to a CPU budget:

- Inputs: the frozen target's hidden states at `fused_layers(L)` (no grad), fused by `fc`.
- Targets: the target's soft next-token distribution restricted to the draft vocabulary and
  renormalised there; loss `KL(p_d || q)`, only at positions whose target argmax is in the
  draft vocabulary (EAGLE's position mask: elsewhere no draft could be accepted anyway).
- Training-time test: `ttt_steps` unrolled steps. Step k feeds back the head's own hidden state
  from step k-1, at positions t+k; row t attends to the target-feature keys of positions <= t and
  to its own keys from steps 1..k, which is exactly what it sees when drafting k+1 deep. Step
  losses are weighted 0.8**k, as in EAGLE's `main.py`.
- Draft vocabulary: the `draft_vocab_size` most frequent target tokens of the head's own training
  text (ties to the lower id), as EAGLE builds `d2t`/`t2d`.

Deviation, declared: EAGLE starts from a random head and trains for days; on a minutes-long CPU
budget we warm-start at an early exit instead: `fc` passes the deepest fused layer through,
`norm` and `lm_head` are copied from the target (rows of the draft vocabulary). The layer itself
starts random (std 0.02, Llama's init).

Everything is drawn from generators seeded by `seed`: the same seed and step cap (`max_steps`)
give the same heads. A wall-clock budget cuts the same batch sequence at a machine-dependent step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from hedgespec_cli.errors import CheckpointError, ConfigError
from hedgespec_cli.files import write_json
from hedgespec_cli.models.eagle3 import ARCHITECTURES, Eagle3Config, Eagle3Head, fused_layers, save_eagle3
from hedgespec_cli.zoo.build import Progress, SilentProgress
from hedgespec_cli.zoo.train import StageBudget, lr_at

GENERIC = "generic"
SCHEMA = "hedgespec.eagle3_heads/1"
STEP_WEIGHT = 0.8  # EAGLE-3's per-unrolled-step loss decay
SAVE_DTYPE = torch.float16  # as the zoo's other checkpoints

Corpus = Sequence[str] | torch.Tensor  # texts, or one 1-D stream of target token ids




def train_eagle_heads(
    target_dir: Path,
    corpora_by_domain: dict[str, Corpus],
    out_dir: Path,
    *,
    seed: int = 0,
    time_budget_s: float,
    progress: Progress | None = None,
    max_steps: int | None = None,
    draft_vocab_size: int = 2048,
    intermediate_size: int | None = None,
    seq_len: int = 128,
    batch_size: int = 8,
    ttt_steps: int = 3,
    peak_lr: float = 2e-3,
) -> dict:
    """Train `generic` + one head per domain, save each under `out_dir/<name>/` in the real
    EAGLE-3 format, write `out_dir/eagle3.json` and return that manifest.

    `time_budget_s` is the total, split evenly: every head gets the same share (and at most
    `max_steps` steps). Texts are tokenised with the tokenizer saved next to the target.
    `intermediate_size` sets the head's MLP width (default: the target's; the layer starts
    random either way).
    """
    if time_budget_s <= 0 and max_steps is None:
        raise ConfigError("give the EAGLE-3 heads a positive time budget or a max_steps cap")
    if len(corpora_by_domain) < 1 or GENERIC in corpora_by_domain:
        raise ConfigError(f"pass at least one domain corpus ({GENERIC!r} is the mixture head's name)")
    if ttt_steps < 1 or seq_len < 2 or batch_size < 1 or draft_vocab_size < 1:
        raise ConfigError("ttt_steps, batch_size and draft_vocab_size must be >= 1, seq_len >= 2")
    if intermediate_size is not None and intermediate_size < 1:
        raise ConfigError(f"the heads' intermediate size must be >= 1 (got {intermediate_size})")
    progress = progress or SilentProgress()
    start = time.perf_counter()
    target = _load_target(Path(target_dir))
    streams = _token_streams(Path(target_dir), corpora_by_domain, seq_len + ttt_steps + 1)
    vocab = int(target.config.vocab_size)
    layers = fused_layers(int(target.config.num_hidden_layers))
    names = [GENERIC, *corpora_by_domain]
    budget = StageBudget(max(time_budget_s, 0.0) / len(names), max_steps)
    out_dir = Path(out_dir)
    heads = []
    for i, name in enumerate(names):
        domains = list(corpora_by_domain) if name == GENERIC else [name]
        gen = torch.Generator().manual_seed(seed + i)
        draft_ids = draft_vocabulary([streams[d] for d in domains], vocab, draft_vocab_size)
        head = _new_head(target, draft_ids, layers, gen, intermediate_size)
        sample = _sampler([streams[d] for d in domains], batch_size, seq_len + ttt_steps + 1, gen)
        stage = f"eagle3-{name}"
        progress.start(stage)
        stats = _train(head, target, sample, budget, peak_lr, ttt_steps,
                       lambda f, s, st=stage: progress.update(st, f, f"step {s['step']} loss {s['loss']:.3f}"))
        save_eagle3(head.to(SAVE_DTYPE), out_dir / name)
        covered = sum(int(torch.isin(streams[d], draft_ids).sum()) for d in domains)
        heads.append({
            "name": name, "kind": "eagle3", "role": "generic" if name == GENERIC else "expert",
            "domain": None if name == GENERIC else name, "path": name,
            "draft_vocab_size": len(draft_ids),
            "draft_coverage": round(covered / sum(len(streams[d]) for d in domains), 4),
            "params": head.num_parameters(), **stats,
        })
        progress.finish(stage, f"{stats['steps']} steps, greedy accept {stats['greedy_accept']}")
    manifest = {
        "schema": SCHEMA, "target": str(target_dir), "fused_layers": list(layers), "seed": seed,
        "settings": {"time_budget_s": time_budget_s, "max_steps": max_steps, "draft_vocab_size": draft_vocab_size,
                     "intermediate_size": head.config.intermediate_size, "seq_len": seq_len,
                     "batch_size": batch_size, "ttt_steps": ttt_steps, "peak_lr": peak_lr},
        "heads": heads, "wall_s": round(time.perf_counter() - start, 1),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "eagle3.json", manifest)
    return manifest


def draft_vocabulary(streams: list[torch.Tensor], vocab_size: int, size: int) -> torch.Tensor:
    """The `size` most frequent ids (ties to the lower id), sorted ascending as EAGLE's `d2t` expects."""
    counts = sum(torch.bincount(s, minlength=vocab_size) for s in streams)
    order = torch.argsort(-counts, stable=True)  # type: ignore[operator]
    return order[: min(size, vocab_size)].sort().values


def _load_target(path: Path):
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").is_file():
        raise CheckpointError(f"target {path} is not a checkpoint (no config.json); build the target first")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"cannot load the target from {path}: {err}") from None
    return model.eval().requires_grad_(False)


def _token_streams(target_dir: Path, corpora: dict[str, Corpus], width: int) -> dict[str, torch.Tensor]:
    """Per domain one 1-D LongTensor; texts become `<s> text </s>` documents, as in the zoo build."""
    tokenizer = None
    out = {}
    for name, corpus in corpora.items():
        if isinstance(corpus, torch.Tensor):
            stream = corpus.reshape(-1).long()
        else:
            if tokenizer is None:
                from transformers import AutoTokenizer

                try:
                    tokenizer = AutoTokenizer.from_pretrained(str(target_dir), local_files_only=True)
                except (OSError, ValueError) as err:
                    raise CheckpointError(f"no tokenizer next to the target in {target_dir} ({err}); "
                                          "pass token id tensors instead of texts") from None
            bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
            eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
            ids: list[int] = []
            # verbose=False: whole documents exceed model_max_length on purpose (windows are cut later)
            for doc in tokenizer(list(corpus), add_special_tokens=False, verbose=False)["input_ids"]:
                ids.extend([*bos, *doc, *eos])
            stream = torch.tensor(ids, dtype=torch.long)
        if len(stream) < width:
            raise ConfigError(f"domain {name!r} has {len(stream)} tokens, fewer than one training window "
                              f"({width}); give it more text or lower seq_len")
        out[name] = stream
    return out


def _sampler(streams: list[torch.Tensor], batch_size: int, width: int, gen: torch.Generator):
    """Random (B, width) windows; a mixture draws each row's stream with p ~ sqrt(tokens), as the zoo does."""
    sizes = torch.tensor([float(len(s)) for s in streams])
    weights = sizes.sqrt() / sizes.sqrt().sum()

    def sample() -> torch.Tensor:
        rows = []
        for i in torch.multinomial(weights, batch_size, replacement=True, generator=gen).tolist():
            off = int(torch.randint(0, len(streams[i]) - width + 1, (1,), generator=gen))
            rows.append(streams[i][off:off + width])
        return torch.stack(rows)

    return sample


def _new_head(target, draft_ids: torch.Tensor, layers: tuple[int, ...], gen: torch.Generator,
              intermediate_size: int | None = None) -> Eagle3Head:
    """A head shaped like one target layer (MLP width `intermediate_size` if given), warm-started at
    an early exit (see the module docstring)."""
    tc = target.config
    rope = getattr(tc, "rope_parameters", None) or getattr(tc, "rope_scaling", None) or {}
    raw = {
        "architectures": [ARCHITECTURES[0]], "hidden_size": tc.hidden_size,
        "intermediate_size": intermediate_size or tc.intermediate_size, "num_attention_heads": tc.num_attention_heads,
        "num_key_value_heads": tc.num_key_value_heads, "head_dim": getattr(tc, "head_dim", None),
        "rms_norm_eps": tc.rms_norm_eps, "rope_theta": getattr(tc, "rope_theta", None),
        "rope_parameters": dict(rope), "max_position_embeddings": tc.max_position_embeddings,
        "vocab_size": tc.vocab_size, "draft_vocab_size": len(draft_ids),
    }
    cfg = Eagle3Config.from_dict({k: v for k, v in raw.items() if v is not None}, "the target's config")
    head = Eagle3Head(cfg, target.get_input_embeddings().weight)
    t2d = torch.zeros(cfg.vocab_size, dtype=torch.bool)
    t2d[draft_ids] = True
    head.set_vocab_map(draft_ids - torch.arange(len(draft_ids)), t2d)
    h = cfg.hidden_size
    with torch.no_grad():
        for module in head.midlayer.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, 0.0, 0.02, generator=gen)
        head.fc.weight.zero_()
        head.fc.weight[:, 2 * h:] = torch.eye(h)  # fc input is [h_a ; h_b ; h_c], c = the deepest (L-3)
        head.lm_head.weight.copy_(target.get_output_embeddings().weight[draft_ids])
        final_norm = getattr(target.base_model, "norm", None)
        if final_norm is not None:
            head.norm.weight.copy_(final_norm.weight)
    return head


class _UnrolledKV:
    """Training-time-test keys: step 0's (causal) block, then one block per unrolled step (diagonal)."""

    def __init__(self) -> None:
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k.append(k)
        self.v.append(v)
        return torch.cat(self.k, dim=2), torch.cat(self.v, dim=2)  # (B, n_kv, (k+1)*S, D)


def _ttt_loss(head: Eagle3Head, target, batch: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[float]]:
    """batch (B, S+steps+1) -> weighted KL over `steps` unrolled steps, greedy acceptance per depth.

    Row t, step k: feature of position t (target's at k=0, else the head's own from step k-1),
    token x_{t+1+k}, rope position t+k, prediction of x_{t+2+k} against the target's p there.
    """
    s = batch.shape[1] - steps - 1
    with torch.no_grad():
        out = target(input_ids=batch[:, :-1], output_hidden_states=True)  # positions 0..S+steps-1
        full = out.logits.float()  # (B, S+steps, V)
        p_log = F.log_softmax(full[..., head.target_ids], dim=-1)  # restricted, renormalised: (B, S+steps, V_d)
        best = full.argmax(-1)  # (B, S+steps) the target's greedy token
        keep = head.t2d[best].float()  # EAGLE's position mask
    feats = head.fuse(out.hidden_states)[:, :s]  # (B, S, H), grad flows into fc
    causal = torch.ones(s, s, dtype=torch.bool).tril()
    diagonal = torch.eye(s, dtype=torch.bool)
    kv, positions = _UnrolledKV(), torch.arange(s)
    total, accepts = torch.zeros(()), []
    for k in range(steps):
        rows = slice(1 + k, 1 + k + s)
        mask = torch.cat([causal] + [diagonal] * k, dim=1)  # (S, (k+1)*S)
        hidden = head.run_layer(batch[:, rows], feats, positions + k, kv, mask)  # (B, S, H)
        q_log = F.log_softmax(head.logits(hidden), dim=-1)  # (B, S, V_d)
        p = p_log[:, rows]
        kl = (p.exp() * (p - q_log)).sum(-1)  # (B, S)
        total = total + STEP_WEIGHT**k * (kl * keep[:, rows]).sum() / keep[:, rows].sum().clamp(min=1.0)
        with torch.no_grad():
            accepts.append(float((head.target_ids[q_log.argmax(-1)] == best[:, rows]).float().mean()))
        feats = hidden  # deeper steps run on the head's own (pre-norm) output
    return total, accepts


def _train(head: Eagle3Head, target, sample, budget: StageBudget, peak_lr: float, steps: int, on_step) -> dict:
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=peak_lr, betas=(0.9, 0.95), weight_decay=0.0)
    head.train()
    start = time.perf_counter()
    step, tokens, ema, accept = 0, 0, None, [0.0] * steps
    while (frac := budget.progress(step, time.perf_counter() - start)) < 1.0:
        for group in opt.param_groups:
            group["lr"] = lr_at(frac, peak_lr)
        batch = sample()
        loss, acc = _ttt_loss(head, target, batch, steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)  # EAGLE's clip
        opt.step()
        step += 1
        tokens += batch.shape[0] * (batch.shape[1] - steps - 1)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        accept = acc if step == 1 else [0.95 * a + 0.05 * b for a, b in zip(accept, acc)]
        on_step(budget.progress(step, time.perf_counter() - start), {"step": step, "loss": ema})
    head.eval()
    return {"steps": step, "tokens": tokens, "train_loss": None if ema is None else round(ema, 4),
            "greedy_accept": [round(a, 3) for a in accept], "wall_s": round(time.perf_counter() - start, 1)}


def build_eagle_zoo(
    zoo_dir: Path, data_dir: Path, *, seed: int = 0, time_budget_s: float, progress: Progress | None = None,
    max_steps: int | None = None, draft_vocab_size: int = 2048, intermediate_size: int | None = None,
) -> dict:
    """Train the zoo's EAGLE-3 heads (generic + one per domain) on its target, from the
    same training text as the LM drafters, into `zoo_dir/eagle3/`, and write the sibling
    profile `<zoo>-eagle3.yaml` whose pool is those heads."""
    from hedgespec_cli.zoo.corpora import load_corpus

    zoo_dir = Path(zoo_dir)
    manifest_path = zoo_dir / "build.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{zoo_dir} has no build.json; build the zoo first with `hedgespec zoo build`")
    zoo = json.loads(manifest_path.read_text())
    domains, max_chars = zoo["spec"]["domains"], zoo["spec"]["max_chars"]
    texts = {d: [doc.text for doc in load_corpus(d, Path(data_dir), max_chars).train] for d in domains}
    manifest = train_eagle_heads(zoo_dir / "target", texts, zoo_dir / "eagle3", seed=seed,
                                 time_budget_s=time_budget_s, progress=progress, max_steps=max_steps,
                                 draft_vocab_size=draft_vocab_size, intermediate_size=intermediate_size)
    base = zoo_dir.name
    lines = [
        f"name: {base}-eagle3",
        "description: Built-in tiny zoo with EAGLE-3 heads (generic + one per domain) as the drafter pool",
        f"target: {{path: {base}/target}}",
        f"tokenizer: {base}/tokenizer",
        *([f"router: {base}/router.npz"] if (zoo_dir / "router.npz").is_file() else []),  # same domains
        "drafters:",
    ]
    for entry in manifest["heads"]:
        name = entry["name"]
        domain, role = (None, "generic") if name == GENERIC else (name, "expert")
        lines.append(f"  - {{name: {name}, kind: eagle3, path: {base}/eagle3/{entry['path']}, "
                     f"domain: {domain or 'null'}, role: {role}}}")
    lines += ["dtype: float32", "device: cpu", "decoding: {K: 5, temperature: 0.0, max_new_tokens: 128}"]
    (zoo_dir.parent / f"{base}-eagle3.yaml").write_text("\n".join(lines) + "\n")
    return manifest
