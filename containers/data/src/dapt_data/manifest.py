"""Mixing manifest: which files the trainer reads, how many tokens each holds, how to weight them.

**Weights.** With D domain tokens, P public tokens and a target domain share s (0 < s < 1),
public sources get sampling weight 1 (each public token seen once) and domain sources

    w_domain = s * P / ((1 - s) * D)

so that w_domain * D / (w_domain * D + P) = s. A weight above 1 repeats domain data (epochs),
below 1 subsamples it. By default every source of a group gets its group's weight, so the mix
within a group is proportional to size. A source's own `weight` (a relative emphasis within its
group, default 1) multiplies it; D and P are then the weighted sums (sum of weight x tokens), so
the target share still holds: w_s = weight_s * (w_domain for domain sources, 1 for public).
`mix_probability` = w * tokens / sum(w * tokens) over all sources is the share of training
tokens drawn from each. Weights are rounded to 9 significant digits;
`achieved_domain_share` is recomputed from the rounded weights and must be within
`SHARE_TOLERANCE` of the target. Without a target (`manifest.target_domain_share: null`) all
weights are 1.

**Versions.** A manifest is written to `manifests/<name>/v<N>.json` and never overwritten:
publishing identical content again returns the existing version (a resumed run is a no-op);
new content gets the next N; writing an existing version with different content is an error.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict
from tokenizers import Tokenizer

from dapt_data.records import Origin, Record
from dapt_data.storage import join, list_names, read_bytes, write_if_absent


class ManifestError(ValueError):
    """The manifest cannot be built or written; the message names the rule and values."""


class TokenCounter(Protocol):
    """Counts tokens of many texts."""

    def describe(self) -> dict[str, str | bool]:
        """What is counted, recorded in the manifest."""
        ...

    def count(self, texts: list[str]) -> int:
        """Total tokens of the texts."""
        ...


@dataclass(frozen=True)
class WhitespaceCounter:
    """Whitespace-separated words: an approximation (BPE tokenizers give ~1.3 tokens a word in
    English and more for code or other scripts); recorded as `approximate: true`."""

    def describe(self) -> dict[str, str | bool]:
        """Recorded in the manifest's `tokenizer`."""
        return {
            "kind": "whitespace",
            "approximate": True,
            "note": "tokens = whitespace-separated words (str.split)",
        }

    def count(self, texts: list[str]) -> int:
        """Sum of word counts."""
        return sum(len(text.split()) for text in texts)


class HuggingFaceCounter:
    """Exact counts with a `tokenizer.json` (Hugging Face `tokenizers`, no special tokens)."""

    def __init__(self, path: str) -> None:
        data = read_bytes(path)
        self.path = path
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.tokenizer = Tokenizer.from_str(data.decode("utf-8"))

    def describe(self) -> dict[str, str | bool]:
        """Recorded in the manifest's `tokenizer`."""
        return {
            "kind": "huggingface",
            "approximate": False,
            "path": self.path,
            "sha256": self.sha256,
        }

    def count(self, texts: list[str]) -> int:
        """Sum of token counts (batched encode)."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        return sum(len(e.ids) for e in encodings)


def make_counter(tokenizer: str | None) -> TokenCounter:
    """Hugging Face tokenizer when a path is given, else the whitespace approximation."""
    return HuggingFaceCounter(tokenizer) if tokenizer else WhitespaceCounter()


class SourceEntry(BaseModel):
    """One source as the trainer sees it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str
    origin: Origin
    files: list[str]
    sha256: str
    records: int
    tokens: int
    sampling_weight: float
    mix_probability: float


class Mix(BaseModel):
    """Token totals and the share achieved vs the target."""

    model_config = ConfigDict(extra="forbid")

    domain_tokens: int
    public_tokens: int
    target_domain_share: float | None
    achieved_domain_share: float
    share_tolerance: float
    formula: str


class DatasetManifest(BaseModel):
    """`manifests/<name>/v<N>.json`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    config_sha256: str
    tokenizer: dict[str, str | bool]
    sources: list[SourceEntry]
    mix: Mix


def domain_weight(domain_tokens: float, public_tokens: float, target: float) -> float:
    """w_domain = s * P / ((1 - s) * D), public weight 1; see the module docstring."""
    if domain_tokens <= 0 or public_tokens <= 0:
        raise ManifestError(
            f"manifest.target_domain_share {target} needs domain and public tokens; got "
            f"domain_tokens={domain_tokens}, public_tokens={public_tokens} (add a source with "
            "origin 'public', or set manifest.target_domain_share: null)"
        )
    return _round(target * public_tokens / ((1 - target) * domain_tokens))


def _round(value: float) -> float:
    return float(f"{value:.9g}")


@dataclass(frozen=True)
class SourceData:
    """A source's final file and counts, input to `build_manifest`."""

    name: str
    kind: str
    origin: Origin
    file: str
    sha256: str
    records: int
    tokens: int
    weight: float = 1.0
    """Relative emphasis within its origin group (`sources[].weight` of the config)."""


def build_manifest(
    name: str,
    sources: list[SourceData],
    target: float | None,
    tokenizer: dict[str, str | bool],
    config_sha256: str,
) -> DatasetManifest:
    """Compute weights and shares (version 0 = not yet published)."""
    domain = sum(s.tokens for s in sources if s.origin is Origin.DOMAIN)
    public = sum(s.tokens for s in sources if s.origin is Origin.PUBLIC)
    weighted_domain = sum(s.weight * s.tokens for s in sources if s.origin is Origin.DOMAIN)
    weighted_public = sum(s.weight * s.tokens for s in sources if s.origin is Origin.PUBLIC)
    w_domain = 1.0 if target is None else domain_weight(weighted_domain, weighted_public, target)
    weights = {
        s.name: _round(s.weight * (w_domain if s.origin is Origin.DOMAIN else 1.0)) for s in sources
    }
    effective = sum(weights[s.name] * s.tokens for s in sources)
    achieved = (
        sum(weights[s.name] * s.tokens for s in sources if s.origin is Origin.DOMAIN) / effective
        if effective
        else 0.0
    )
    if target is not None and abs(achieved - target) > SHARE_TOLERANCE:
        raise ManifestError(
            f"achieved domain share {achieved} is not within {SHARE_TOLERANCE} "
            f"of manifest.target_domain_share {target}"
        )
    entries = [
        SourceEntry(
            name=s.name,
            kind=s.kind,
            origin=s.origin,
            files=[s.file],
            sha256=s.sha256,
            records=s.records,
            tokens=s.tokens,
            sampling_weight=weights[s.name],
            mix_probability=_round(weights[s.name] * s.tokens / effective) if effective else 0.0,
        )
        for s in sources
    ]
    mix = Mix(
        domain_tokens=domain,
        public_tokens=public,
        target_domain_share=target,
        achieved_domain_share=_round(achieved),
        share_tolerance=SHARE_TOLERANCE,
        formula="w_public = 1; w_domain = s * P / ((1 - s) * D)",
    )
    return DatasetManifest(
        name=name,
        version=0,
        config_sha256=config_sha256,
        tokenizer=tokenizer,
        sources=entries,
        mix=mix,
    )


def manifest_bytes(manifest: DatasetManifest) -> bytes:
    """Canonical JSON (indented, stable order, trailing newline)."""
    return (
        json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    ).encode("utf-8")


def write_version(root: str, manifest: DatasetManifest) -> str:
    """Write `manifests/<name>/v<version>.json`; refuse an existing one with other content."""
    uri = join(root, "manifests", manifest.name, f"v{manifest.version}.json")
    data = manifest_bytes(manifest)
    if write_if_absent(uri, data):
        return uri
    if read_bytes(uri) != data:
        raise ManifestError(
            f"manifest {uri} already exists with different content; "
            "versions are immutable: publish a new version instead"
        )
    return uri


def publish(root: str, manifest: DatasetManifest) -> tuple[DatasetManifest, str, bool]:
    """Publish as a new version unless identical content exists: (manifest, uri, created)."""
    folder = join(root, "manifests", manifest.name)
    versions = sorted(int(m.group(1)) for n in list_names(folder) if (m := _VERSION.match(n)))
    for number in versions:
        candidate = manifest.model_copy(update={"version": number})
        uri = join(folder, f"v{number}.json")
        if read_bytes(uri) == manifest_bytes(candidate):
            return candidate, uri, False
    for attempt in range(PUBLISH_ATTEMPTS):
        number = (versions[-1] if versions else 0) + 1 + attempt
        candidate = manifest.model_copy(update={"version": number})
        uri = join(folder, f"v{number}.json")
        if write_if_absent(uri, manifest_bytes(candidate)):
            return candidate, uri, True
    raise ManifestError(
        f"could not claim a new version under {folder} after "
        f"{PUBLISH_ATTEMPTS} attempts (concurrent publishers?)"
    )


def read_manifest(uri: str) -> DatasetManifest:
    """Load and validate a published manifest."""
    return DatasetManifest.model_validate_json(read_bytes(uri))


def count_tokens(records: list[Record], counter: TokenCounter) -> int:
    """Tokens of the records' texts."""
    return counter.count([r.text for r in records])


def local_manifest_path(root: str, name: str, version: int) -> Path:
    """Where a version lives under a local output folder."""
    return Path(root) / "manifests" / name / f"v{version}.json"


_VERSION = re.compile(r"^v(\d+)\.json$")
SHARE_TOLERANCE = 1e-6
PUBLISH_ATTEMPTS = 5
