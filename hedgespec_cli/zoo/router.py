"""The zoo's prompt classifier for the `router` baseline: train, evaluate, ship.

`hedgespec zoo build` runs this as its last step; `hedgespec zoo router` runs
it alone on an existing zoo (no model is retrained): it reads the zoo's
build.json for its domains and corpus size, loads the same training split
from the corpora cache (`<data_dir>/corpora`, fetched again if missing), counts
tokens with the zoo's tokenizer and writes `<zoo>/router.npz`. The held-out
workload prompts (`workloads/prompts/<domain>.jsonl`) give its accuracy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from hedgespec_cli.errors import ConfigError
from hedgespec_cli.selection.classifier import PromptClassifier

ROUTER_FILE = "router.npz"


def train_router(token_ids: Mapping[str, Iterable[Sequence[int]]], vocab_size: int,
                 provenance: Mapping[str, object]) -> PromptClassifier:
    """Naive Bayes counts over each domain's training token ids (selection/classifier.py)."""
    return PromptClassifier.fit(token_ids, vocab_size, provenance=provenance)


def read_prompts(prompts_dir: Path, domains: Sequence[str]) -> list[dict]:
    rows = []
    for d in domains:
        path = prompts_dir / f"{d}.jsonl"
        if path.is_file():
            rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows


def evaluate_router(clf: PromptClassifier, tokenizer, prompts: Sequence[dict]) -> dict:
    """Accuracy (fraction of prompts routed to their own domain), overall and per domain,
    and every misrouting as {true domain: {predicted: count}}."""
    if not prompts:
        return {"prompts": 0, "accuracy": None, "by_domain": {}, "misrouted": {}}
    hits: dict[str, list[bool]] = {}
    misrouted: dict[str, dict[str, int]] = {}
    for p in prompts:
        pred = clf.predict(tokenizer(p["prompt"], verbose=False)["input_ids"])
        hits.setdefault(p["domain"], []).append(pred == p["domain"])
        if pred != p["domain"]:
            row = misrouted.setdefault(p["domain"], {})
            row[pred] = row.get(pred, 0) + 1
    every = [h for v in hits.values() for h in v]
    return {
        "prompts": len(every),
        "accuracy": float(np.mean(every)),
        "by_domain": {d: float(np.mean(v)) for d, v in hits.items()},
        "misrouted": misrouted,
    }


def build_router(zoo_dir: Path, data_dir: Path, prompts_dir: Path | None) -> dict:
    """Train and save `<zoo_dir>/router.npz` from the zoo's own training split; returns the report."""
    from transformers import AutoTokenizer

    from hedgespec_cli.zoo.corpora import load_corpus

    manifest_path = zoo_dir / "build.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{zoo_dir} has no build.json; point --zoo at a zoo built by `hedgespec zoo build`")
    spec = json.loads(manifest_path.read_text())["spec"]
    domains, max_chars = list(spec["domains"]), int(spec["max_chars"])
    tokenizer = AutoTokenizer.from_pretrained(str(zoo_dir / "tokenizer"), local_files_only=True)
    backend = tokenizer.backend_tokenizer
    ids, docs = {}, {}
    for d in domains:
        corpus = load_corpus(d, data_dir, max_chars)
        ids[d] = [enc.ids for enc in backend.encode_batch([doc.text for doc in corpus.train],
                                                             add_special_tokens=False)]
        docs[d] = len(corpus.train)
    clf = train_router(ids, len(tokenizer), {"trained_on": "the zoo's training split", "train_docs": docs,
                                              "max_chars": max_chars})
    clf.save(zoo_dir / ROUTER_FILE)
    report = {"path": str(zoo_dir / ROUTER_FILE), "domains": domains, "train_docs": docs,
              "bytes": (zoo_dir / ROUTER_FILE).stat().st_size}
    if prompts_dir is not None:
        report["heldout_prompts"] = evaluate_router(clf, tokenizer, read_prompts(prompts_dir, domains))
    return report
