"""Build the tiny zoo end to end: corpora -> tokenizer -> target -> distilled drafters.

`build_zoo(spec, progress)` is the one entry point (the CLI and the tests call
it). The time budget is split across stages after the data stages have run:
`TARGET_SHARE` of what is left pretrains the target, the rest is split evenly
across the drafters (one expert per domain plus `generic`), so every drafter
gets the same budget. Everything is written under `spec.out_dir`:

    tokenizer/  target/  drafters/<name>/  build.json
    ../<out name>.yaml      a profile pointing at the above (paths relative to it)
    <prompts_dir>/<domain>.jsonl   held-out prompts, when `prompts_dir` is set
"""

from __future__ import annotations

import json
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.files import write_json
from hedgespec_cli.zoo.corpora import DEFAULT_DOMAINS, DOMAINS, Corpus, load_corpus
from hedgespec_cli.zoo.train import DRAFTER_SHAPE, TARGET_SHAPE, ModelShape

TARGET_SHARE = 0.55
EVAL_RESERVE = 0.04  # of the training budget, kept for held-out evaluation and saving
SAVE_DTYPE = "float16"
GENERIC = "generic"


@dataclass(frozen=True)
class BuildSpec:
    out_dir: Path
    data_dir: Path = Path("data")
    prompts_dir: Path | None = None
    domains: tuple[str, ...] = DEFAULT_DOMAINS
    seed: int = 0
    time_budget_s: float = 45 * 60
    max_steps: int | None = None  # per training stage; caps a miniature build
    target_steps: int | None = None  # the target's own step cap (default: max_steps)
    max_chars: int = 2_500_000  # per domain
    vocab_size: int = 4096
    seq_len: int = 256
    batch_size: int = 16
    eval_windows: int = 24  # held-out windows of seq_len per domain
    prompts_per_domain: int = 24
    target_lr: float = 1.5e-3
    drafter_lr: float = 3e-3
    target_shape: ModelShape = TARGET_SHAPE
    drafter_shape: ModelShape = DRAFTER_SHAPE
    threads: int = 2
    device: str = "cpu"  # where the target and drafters train: "cpu" or "cuda" (EAGLE-3 heads: the CPU)
    reuse_target: bool = False  # keep out_dir's tokenizer and target; re-distil the drafters only
    # On-policy distillation: this share of every drafter batch is the target's own greedy
    # continuations of train-split prefixes (`continuations` per domain), the text a drafter
    # meets when it drafts for the target at T = 0.
    onpolicy_frac: float = 0.5
    continuations: int = 128
    eagle_budget_s: float = 0.0  # > 0: also train EAGLE-3 heads (generic + per domain) on the target

    def __post_init__(self):
        unknown = [d for d in self.domains if d not in DOMAINS]
        if unknown:
            raise ConfigError(f"unknown domain(s) {', '.join(unknown)}; choose from {', '.join(DOMAINS)}")
        if len(set(self.domains)) < 2:
            raise ConfigError("a zoo needs at least two domains; pass more with --domains")
        if GENERIC in self.domains:
            raise ConfigError(f"{GENERIC!r} is the mixture drafter's name, not a domain")
        if not 0.0 <= self.onpolicy_frac <= 1.0:
            raise ConfigError(f"--onpolicy-frac must lie in [0, 1], got {self.onpolicy_frac}")
        if self.continuations < 0:
            raise ConfigError(f"--continuations must be >= 0, got {self.continuations}")
        if self.time_budget_s <= 0 and self.max_steps is None:
            raise ConfigError("give a positive --time-budget or a --max-steps cap")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"--device must be cpu or cuda, got {self.device!r}")
        for flag, value in (("--target-steps", self.target_steps), ("--max-steps", self.max_steps),
                            ("--batch-size", self.batch_size)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag} must be >= 1, got {value}")
        if self.target_steps is not None and self.reuse_target:
            raise ConfigError("--target-steps trains a new target; --reuse-target keeps the old one: pass one of them")


class Progress(Protocol):
    """Per-stage progress; the CLI renders it with rich, library callers may pass `SilentProgress`."""

    def start(self, stage: str) -> None: ...
    def update(self, stage: str, frac: float, note: str) -> None: ...
    def finish(self, stage: str, note: str) -> None: ...


class SilentProgress:
    def start(self, stage: str) -> None:
        pass

    def update(self, stage: str, frac: float, note: str) -> None:
        pass

    def finish(self, stage: str, note: str) -> None:
        pass


@dataclass
class _Data:
    """Token streams: per domain, a 1-D train tensor and (W, T+1) held-out windows."""

    train: dict = field(default_factory=dict)
    heldout: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


def _tokenize(corpora: dict[str, Corpus], tokenizer, spec: BuildSpec) -> _Data:
    import torch

    backend = tokenizer.backend_tokenizer
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    data = _Data()

    def stream(docs):
        ids: list[int] = []
        for enc in backend.encode_batch([d.text for d in docs], add_special_tokens=False):
            ids.extend([bos, *enc.ids, eos])  # every document is <s> text </s>
        return torch.tensor(ids, dtype=torch.int32)

    width = spec.seq_len + 1
    for name, corpus in corpora.items():
        train, held = stream(corpus.train), stream(corpus.heldout)
        n_win = min(spec.eval_windows, len(held) // width)
        if n_win < 1 or len(train) <= width:
            raise ConfigError(f"domain {name!r} is too small for seq_len {spec.seq_len}; "
                              "raise --max-chars")
        data.train[name] = train
        data.heldout[name] = held[: n_win * width].view(n_win, width).long()
        data.stats[name] = {"train_tokens": len(train), "heldout_tokens": len(held),
                            "eval_tokens": n_win * spec.seq_len}
    return data


def _sampler(data: _Data, domains: list[str], spec: BuildSpec, seed: int, onpolicy: dict | None = None):
    """Batches of random windows; a mixture draws each row's domain with p ~ sqrt(tokens).

    With `onpolicy` ({domain: (S, T+1) continuations}), each row is instead one of
    that domain's target continuations with probability `spec.onpolicy_frac`.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    sizes = torch.tensor([float(len(data.train[d])) for d in domains])
    weights = sizes.sqrt() / sizes.sqrt().sum()
    width = spec.seq_len + 1
    frac = spec.onpolicy_frac if onpolicy else 0.0

    def sample():
        rows = []
        picks = torch.multinomial(weights, spec.batch_size, replacement=True, generator=gen)
        own = (torch.rand(spec.batch_size, generator=gen) < frac).tolist()
        for i, from_target in zip(picks.tolist(), own):
            if from_target:
                bank = onpolicy[domains[i]]
                rows.append(bank[int(torch.randint(0, bank.shape[0], (1,), generator=gen))])
                continue
            s = data.train[domains[i]]
            off = int(torch.randint(0, len(s) - width + 1, (1,), generator=gen))
            rows.append(s[off:off + width].long())
        return torch.stack(rows)  # (B, T+1) int64, like the continuations

    return sample, {d: round(float(w), 4) for d, w in zip(domains, weights)}


def _continuations(target, data: _Data, spec: BuildSpec, progress: Progress) -> dict:
    """Per domain, `spec.continuations` windows: a train-split prefix (the first quarter) and
    the target's greedy continuation of it (the rest), generated in batches with a KV cache."""
    import torch

    width = spec.seq_len + 1
    prefix = max(width // 4, 1)
    gen = torch.Generator().manual_seed(spec.seed + 10_007)
    out: dict = {}
    total = len(data.train) * spec.continuations
    done = 0
    for name, stream in data.train.items():
        rows = []
        for start in range(0, spec.continuations, 32):
            b = min(32, spec.continuations - start)
            offs = torch.randint(0, len(stream) - prefix + 1, (b,), generator=gen).tolist()
            ids = torch.stack([stream[o:o + prefix] for o in offs]).long().to(target.device)
            rows.append(_greedy(target, ids, width - prefix).cpu())
            done += b
            progress.update("continuations", done / total, name)
        out[name] = torch.cat(rows)
    return out


def _greedy(model, ids, new: int):
    """(B, P) prompts -> (B, P + new) with `new` greedy tokens (no stop at EOS: the stream goes on)."""
    import torch
    from transformers import DynamicCache

    from hedgespec_cli.models.causal_lm import cache_kwarg

    cache = {cache_kwarg(model): DynamicCache(config=model.config)}  # filled in place
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True, **cache)
        seq = [ids]
        for i in range(new):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            seq.append(nxt)
            if i < new - 1:
                out = model(input_ids=nxt, use_cache=True, **cache)
    return torch.cat(seq, dim=1)


def _evaluate(model, data: _Data) -> dict[str, float]:
    from hedgespec_cli.zoo.train import heldout_loss

    return {d: round(heldout_loss(model, w), 4) for d, w in data.heldout.items()}


def _previous_build(spec: BuildSpec) -> dict:
    """The manifest of the zoo whose target a drafters-only rebuild keeps."""
    path = spec.out_dir / "build.json"
    if not (path.is_file() and (spec.out_dir / "target").is_dir()):
        raise ConfigError(f"--reuse-target needs a built zoo in {spec.out_dir} (build.json and target/)")
    previous = json.loads(path.read_text())
    if previous["seed"] != spec.seed or list(previous["spec"]["domains"]) != list(spec.domains):
        raise ConfigError("--reuse-target needs the previous build's --seed and --domains")
    return previous


def _save(model, tokenizer, path: Path) -> None:
    """Save a float16 copy; the model itself stays as it is (`Module.to` would cast it in place)."""
    import copy

    import torch

    if path.exists():
        shutil.rmtree(path)
    copy.deepcopy(model).to(getattr(torch, SAVE_DTYPE)).save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)  # every checkpoint is self-contained


def _round_trip(model):
    """Round the parameters to the saved dtype, in place, so that held-out losses, continuations
    and distillation use exactly the saved weights. Buffers (RoPE's inv_freq) are not saved, and a
    loader recomputes them in float32, so they are left alone."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(getattr(torch, SAVE_DTYPE)))
    return model


def _model_entry(model, role: str, domain: str | None, stats: dict, losses: dict) -> dict:
    from hedgespec_cli.zoo.train import count_params

    total, non_emb = count_params(model)
    cfg = model.config
    return {"role": role, "domain": domain, "params": total, "non_embedding_params": non_emb,
            "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, **stats,
            "device": model.device.type, "heldout_loss": losses}


def _write_prompts(corpora: dict[str, Corpus], tokenizer, spec: BuildSpec) -> dict[str, int]:
    """`prompts_per_domain` prefixes (40-80 tokens) of held-out documents, starting at a line."""
    spec.prompts_dir.mkdir(parents=True, exist_ok=True)
    backend = tokenizer.backend_tokenizer
    counts = {}
    for name, corpus in corpora.items():
        rng = random.Random(f"{spec.seed}-{name}")
        docs = list(corpus.heldout)
        rng.shuffle(docs)
        rows, seen = [], set()
        for attempt in range(spec.prompts_per_domain * 20):
            if len(rows) == spec.prompts_per_domain:
                break
            text = docs[attempt % len(docs)].text
            starts = [0] + [i + 1 for i, ch in enumerate(text[:-200])
                            if ch == "\n" and text[i + 1] != "\n"]  # non-empty line starts
            start = rng.choice(starts)
            ids = backend.encode(text[start:start + 2_000], add_special_tokens=False).ids
            n = rng.randint(40, 80)
            if len(ids) < n + 16:
                continue  # leave room for a held-out continuation
            prompt = tokenizer.decode(ids[:n])
            if "\ufffd" in prompt or prompt in seen or not prompt.strip():
                continue  # cut inside a UTF-8 character, a repeat, or blank
            seen.add(prompt)
            rows.append({"id": f"{name}-{len(rows):04d}", "domain": name, "prompt": prompt})
        with (spec.prompts_dir / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts[name] = len(rows)
    return counts


def _build_router(corpora: dict[str, Corpus], data: _Data, tokenizer, spec: BuildSpec) -> dict:
    """The `router` baseline's prompt classifier from the training token streams (zoo/router.py)."""
    from hedgespec_cli.zoo.router import ROUTER_FILE, evaluate_router, read_prompts, train_router

    clf = train_router({n: [data.train[n].numpy()] for n in corpora}, len(tokenizer),
                       {"trained_on": "the zoo's training split",
                        "train_docs": {n: len(c.train) for n, c in corpora.items()}, "max_chars": spec.max_chars})
    clf.save(spec.out_dir / ROUTER_FILE)
    prompts = read_prompts(spec.prompts_dir, list(corpora)) if spec.prompts_dir else []
    return {"file": ROUTER_FILE, "heldout_prompts": evaluate_router(clf, tokenizer, prompts)}


def _write_profile(spec: BuildSpec, drafters: list[tuple[str, str | None, str]]) -> Path:
    import yaml

    base = spec.out_dir.name
    lines = [
        f"name: {base}",
        "description: Built-in tiny zoo (Llama target + one distilled drafter per domain + generic)",
        f"target: {{path: {base}/target}}",
        f"tokenizer: {base}/tokenizer",
        f"router: {base}/router.npz",
        "drafters:",
    ]
    for name, domain, role in drafters:
        lines.append(f"  - {{name: {name}, kind: lm, path: {base}/drafters/{name}, "
                     f"domain: {domain if domain else 'null'}, role: {role}}}")
    lines += ["dtype: float32", "device: cpu",
              "decoding: {K: 5, temperature: 0.0, max_new_tokens: 128}"]
    path = spec.out_dir.parent / f"{base}.yaml"
    text = "\n".join(lines) + "\n"
    yaml.safe_load(text)  # the hand-written flow style must stay valid YAML
    path.write_text(text)
    return path


def build_zoo(spec: BuildSpec, progress: Progress | None = None) -> dict:
    """Build the zoo described by `spec`; returns the manifest also written to build.json."""
    import tokenizers
    import torch
    import transformers

    from hedgespec_cli.zoo.tokenizer import train_tokenizer
    from hedgespec_cli.zoo.train import StageBudget, distill, make_model, pretrain

    progress = progress or SilentProgress()
    transformers.utils.logging.disable_progress_bar()  # our own bars only
    torch.set_num_threads(spec.threads)
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda but no CUDA device is visible; use --device cpu")
    device = torch.device(spec.device)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    spec.out_dir.mkdir(parents=True, exist_ok=True)

    progress.start("corpora")
    corpora = {}
    for i, name in enumerate(spec.domains):
        corpora[name] = load_corpus(name, spec.data_dir, spec.max_chars)
        progress.update("corpora", (i + 1) / len(spec.domains), name)
    stages["corpora"] = round(time.perf_counter() - t0, 1)
    progress.finish("corpora", f"{len(corpora)} domains")

    t = time.perf_counter()
    progress.start("tokenizer")
    previous = _previous_build(spec) if spec.reuse_target else None
    if previous is not None:  # the target (and EAGLE-3 heads trained on it) stay valid
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(spec.out_dir / "tokenizer"), local_files_only=True)
    else:
        tokenizer = train_tokenizer({n: (d.text for d in c.train) for n, c in corpora.items()},
                                    spec.vocab_size, spec.out_dir / "tokenizer")
    data = _tokenize(corpora, tokenizer, spec)
    prompt_counts = _write_prompts(corpora, tokenizer, spec) if spec.prompts_dir else {}
    router = _build_router(corpora, data, tokenizer, spec)
    stages["tokenizer"] = round(time.perf_counter() - t, 1)
    progress.finish("tokenizer", f"{len(tokenizer)} tokens")

    # TARGET_SHARE of what is left of the budget pretrains the target; what is left after it
    # (and the continuations) is split evenly across the drafters.
    def left_s() -> float:
        return max(spec.time_budget_s - (time.perf_counter() - t0), 0.0) * (1 - EVAL_RESERVE)

    drafter_names = [GENERIC, *spec.domains]
    target_budget = StageBudget(0.0 if previous is not None else left_s() * TARGET_SHARE,
                                spec.target_steps or spec.max_steps)
    models: dict[str, dict] = {}
    domains = list(spec.domains)

    def on_step(stage):
        return lambda frac, s: progress.update(
            stage, frac, f"step {s['step']} loss {s['loss']:.3f} lr {s['lr']:.1e}")

    t = time.perf_counter()
    progress.start("target")
    sample, mix = _sampler(data, domains, spec, seed=spec.seed)
    if previous is not None:
        target = transformers.AutoModelForCausalLM.from_pretrained(str(spec.out_dir / "target")).float().to(device)
        models["target"] = previous["models"]["target"]
        stages["target"] = previous["stages_wall_s"]["target"]
        progress.finish("target", "reused from the previous build")
    else:
        target = make_model(spec.target_shape, tokenizer, seed=spec.seed).to(device)
        stats = pretrain(target, sample, target_budget, spec.target_lr, on_step("target"))
        target = _round_trip(target)
        models["target"] = _model_entry(target, "target", None, stats, _evaluate(target, data))
        _save(target, tokenizer, spec.out_dir / "target")
        stages["target"] = round(time.perf_counter() - t, 1)
        progress.finish("target", f"{stats['steps']} steps, loss {stats['train_loss']:.3f}")
    for p in target.parameters():
        p.requires_grad_(False)

    onpolicy = None
    if spec.onpolicy_frac > 0 and spec.continuations > 0:
        t = time.perf_counter()
        progress.start("continuations")
        target.eval()
        onpolicy = _continuations(target, data, spec, progress)
        stages["continuations"] = round(time.perf_counter() - t, 1)
        progress.finish("continuations", f"{spec.continuations} per domain")

    drafter_budget = StageBudget(left_s() / len(drafter_names), spec.max_steps)

    for i, name in enumerate(drafter_names):
        t = time.perf_counter()
        stage = f"drafter {name}"
        progress.start(stage)
        drafter = make_model(spec.drafter_shape, tokenizer, seed=spec.seed + 1 + i).to(device)
        # The generic drafter sees the target's mixture; an expert only its own domain.
        sample, _ = _sampler(data, domains if name == GENERIC else [name], spec,
                             seed=spec.seed + 1 + i, onpolicy=onpolicy)
        stats = distill(drafter, target, sample, drafter_budget, spec.drafter_lr, on_step(stage))
        drafter = _round_trip(drafter)
        domain, role = (None, "generic") if name == GENERIC else (name, "expert")
        models[name] = _model_entry(drafter, role, domain, stats, _evaluate(drafter, data))
        _save(drafter, tokenizer, spec.out_dir / "drafters" / name)
        stages[stage] = round(time.perf_counter() - t, 1)
        progress.finish(stage, f"{stats['steps']} steps, KL {stats['train_loss']:.3f}")

    profile = _write_profile(spec, [(n, models[n]["domain"], models[n]["role"])
                                    for n in drafter_names])
    manifest = {
        "schema": "hedgespec.zoo/1",
        "seed": spec.seed,
        "spec": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(spec).items()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__},
        "saved_dtype": SAVE_DTYPE,
        "vocab_size": len(tokenizer),
        "sources": {n: {**c.provenance, "train_docs": len(c.train), "heldout_docs": len(c.heldout),
                        "chars": c.n_chars, **data.stats[n]} for n, c in corpora.items()},
        "mixture_weights": mix,
        "prompts": prompt_counts,
        "router": router,
        "budget_s": {"total": spec.time_budget_s, "target": round(target_budget.seconds, 1),
                     "per_drafter": round(drafter_budget.seconds, 1)},
        "stages_wall_s": stages,
        "wall_s": round(time.perf_counter() - t0, 1),
        "profile": profile.name,
        "models": models,
    }
    write_json(spec.out_dir / "build.json", manifest)
    if spec.eagle_budget_s > 0:
        from hedgespec_cli.zoo.eagle import build_eagle_zoo

        build_eagle_zoo(spec.out_dir, spec.data_dir, seed=spec.seed, time_budget_s=spec.eagle_budget_s,
                        progress=progress, max_steps=spec.max_steps)
    return json.loads((spec.out_dir / "build.json").read_text(encoding="utf-8"))  # what is on disk (tuples: lists)
