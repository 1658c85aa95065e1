"""The LoRA adapter as SageMaker serves it: one ``.tar.gz`` with the adapter's files at its root.

An adapter inference component takes its artifact as a single archive (``ArtifactUrl``), and the
large-model-inference container expects ``adapter_config.json`` and the adapter weights at the
archive's root, not under a folder. The archive is reproducible: members sorted, owners and times
zeroed, gzip header without a timestamp, so the same adapter always gives the same bytes (and the
same hash in lineage and the registry).
"""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

ADAPTER_ARCHIVE = "adapter.tar.gz"
"""Name of the archive beside ``final/adapter/``."""


def archive_adapter(adapter_dir: Path, out: Path) -> Path:
    """Write ``out`` with every file of ``adapter_dir`` at the archive root; returns ``out``."""
    files = sorted(p for p in adapter_dir.iterdir() if p.is_file())
    if not any(p.name == "adapter_config.json" for p in files):
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json: not a PEFT adapter")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tarfile.TarInfo(path.name)
            info.size = path.stat().st_size
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    with out.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    return out
