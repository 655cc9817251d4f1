"""The `router` baseline's prompt classifier: multinomial naive Bayes over token counts.

HedgeSpec (arXiv 2510.20064) compares against an offline router: a prompt
classifier (theirs: a BERT model) trained to send each prompt to the expert of
its predicted domain. It is perfect in a closed world and misroutes once
prompts stop looking like its training data; `router-label`, which reads the
prompt's true domain label, is that closed world's upper bound.

This classifier is the small, fast version of that router for the tiny zoo
(`hedgespec zoo router` trains it on the zoo's training split; no model is
retrained). Over the target tokenizer's ids, with a uniform class prior:

    predict(x) = argmax_d  sum_v c_v(x) log theta_{d,v},
    theta_{d,v} = (N_{d,v} + alpha) / (sum_v' N_{d,v'} + alpha V)

c_v(x): count of token v in the prompt; N_{d,v}: count of v in domain d's
training text (Laplace smoothing alpha). The uniform prior is a choice: the
training split's sizes say how much text was collected, not how often a
domain is asked. The file stores the counts, so it can be refitted with
another alpha.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hedgespec_cli.errors import ConfigError

SCHEMA = "hedgespec.router/1"


@dataclass(frozen=True)
class PromptClassifier:
    """domains: (D,) labels; counts: (D, V) token counts of each domain's training text."""

    domains: tuple[str, ...]
    counts: np.ndarray
    alpha: float = 1.0
    provenance: Mapping[str, object] | None = None

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[0] != len(self.domains) or counts.shape[0] < 1:
            raise ConfigError(f"router classifier: counts must be (domains, vocab), got {counts.shape}")
        if self.alpha <= 0:
            raise ConfigError(f"router classifier: alpha must be > 0 (got {self.alpha})")
        object.__setattr__(self, "counts", counts)
        smoothed = counts + self.alpha
        # (D, V) log theta_{d,v}
        object.__setattr__(self, "_log_theta", np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True)))

    @property
    def vocab_size(self) -> int:
        return int(self.counts.shape[1])

    @classmethod
    def fit(cls, texts: Mapping[str, Iterable[Sequence[int]]], vocab_size: int, *, alpha: float = 1.0,
            provenance: Mapping[str, object] | None = None) -> PromptClassifier:
        """Count every token of each domain's token-id sequences."""
        domains = tuple(texts)
        counts = np.zeros((len(domains), vocab_size), dtype=np.int64)
        for d, seqs in enumerate(texts.values()):
            for ids in seqs:
                counts[d] += np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab_size)[:vocab_size]
        return cls(domains, counts, alpha, provenance)

    def scores(self, ids: Sequence[int]) -> np.ndarray:
        """Log-likelihood of the prompt under each domain, (D,); ids beyond the vocabulary are ignored."""
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < self.vocab_size)]
        return self._log_theta[:, ids].sum(axis=1)  # type: ignore[attr-defined]

    def predict(self, ids: Sequence[int]) -> str:
        """The most likely domain (ties: the first listed)."""
        return self.domains[int(np.argmax(self.scores(ids)))]

    def save(self, path: Path) -> None:
        """One compressed .npz (counts as integers, the rest as a JSON header); written atomically."""
        header = {"schema": SCHEMA, "domains": list(self.domains), "alpha": self.alpha,
                  "provenance": dict(self.provenance or {})}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, counts=self.counts, header=np.array(json.dumps(header)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> PromptClassifier:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                counts = data["counts"]
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(f"cannot read the router classifier {path}: {err}; rebuild it with "
                              "`hedgespec zoo router`") from None
        if header.get("schema") != SCHEMA:
            raise ConfigError(f"{path} is not a {SCHEMA} classifier; rebuild it with `hedgespec zoo router`")
        return cls(tuple(header["domains"]), counts, float(header["alpha"]), header.get("provenance"))
