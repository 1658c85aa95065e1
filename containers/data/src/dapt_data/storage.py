"""Files on a local disk or under an S3 prefix, behind one small interface.

The pipeline addresses everything by URI (`/data/out/raw/kb.jsonl` or
`s3://bucket/prefix/raw/kb.jsonl`), so the same code runs as a local command and as a Batch
job. Only what the steps need is here: list, read, write, write-if-absent, exists.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3


@dataclass(frozen=True)
class FileRef:
    """One input file: its URI, size and a fingerprint (sha256 or S3 ETag) for resume hashes."""

    uri: str
    size: int
    fingerprint: str


@dataclass(frozen=True)
class Listing:
    """What a source's folder or prefix holds: the matching files, broken symlinks, and how
    many other files did not match the include globs."""

    files: list[FileRef]
    broken_links: list[str]
    other_files: int


class StorageError(RuntimeError):
    """A read or write failed; the message names the URI."""


def is_s3(uri: str) -> bool:
    """Whether a URI names S3 (`s3://bucket/key`)."""
    return uri.startswith("s3://")


def join(base: str, *parts: str) -> str:
    """Join URI segments with `/` (S3) or the OS separator (local)."""
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base).joinpath(*parts))


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise StorageError(f"'{uri}' is not an S3 URI of the form s3://bucket/key")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_client() -> Any:
    """A boto3 S3 client; region and credentials come from the usual AWS environment."""
    return boto3.client("s3")


def list_files(root: str, include: list[str]) -> list[FileRef]:
    """Files under a folder/prefix (or the single file `root`) whose name matches `include`.

    Sorted by URI, so record order (and therefore "first occurrence" in dedup) is stable.
    """
    return list_source(root, include).files


def list_source(root: str, include: list[str]) -> Listing:
    """`list_files` with what it left out: broken symlinks and the files not matching.

    Names match `include` case-insensitively (`A.MD` matches `*.md`).
    """
    refs, broken = (_list_s3(root), []) if is_s3(root) else _list_local(Path(root))
    matching = [r for r in refs if _matches(r.uri, include)]
    return Listing(sorted(matching, key=lambda r: r.uri), broken, len(refs) - len(matching))


def _matches(uri: str, include: list[str]) -> bool:
    name = uri.rsplit("/", 1)[-1].casefold()
    return any(fnmatch.fnmatchcase(name, pattern.casefold()) for pattern in include)


def _list_local(root: Path) -> tuple[list[FileRef], list[str]]:
    if root.is_file():
        paths, broken = [root], []
    elif root.is_dir():
        found = sorted(root.rglob("*"))
        paths = [p for p in found if p.is_file()]
        broken = [str(p) for p in found if p.is_symlink() and not p.exists()]
    else:
        raise StorageError(f"input path '{root}' does not exist")
    refs = [FileRef(str(p), p.stat().st_size, _local_fingerprint(p)) for p in paths]
    return refs, broken


def _local_fingerprint(path: Path) -> str:
    # size + mtime would be cheaper but a touched-but-equal file must not invalidate a step,
    # and a rewritten file with the same size must; content hashing is the honest choice.
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _list_s3(root: str) -> list[FileRef]:
    bucket, prefix = split_s3(root)
    paginator = s3_client().get_paginator("list_objects_v2")
    refs: list[FileRef] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            if key.endswith("/"):
                continue
            refs.append(FileRef(f"s3://{bucket}/{key}", int(obj["Size"]), str(obj["ETag"])))
    if not refs:
        raise StorageError(f"input prefix '{root}' has no objects")
    return refs


def read_bytes(uri: str) -> bytes:
    """Whole file or object."""
    if not is_s3(uri):
        try:
            return Path(uri).read_bytes()
        except OSError as err:
            raise StorageError(f"cannot read '{uri}': {err}") from err
    bucket, key = split_s3(uri)
    try:
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
        return bytes(body.read())
    except Exception as err:
        raise StorageError(f"cannot read '{uri}': {err}") from err


def sha256_of(uri: str) -> str:
    """Hex sha256 of a file or object, read in chunks (the whole file never sits in memory)."""
    digest = hashlib.sha256()
    try:
        if not is_s3(uri):
            with Path(uri).open("rb") as handle:
                for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
                    digest.update(chunk)
        else:
            bucket, key = split_s3(uri)
            body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
            for chunk in body.iter_chunks(CHUNK_BYTES):
                digest.update(chunk)
    except Exception as err:
        raise StorageError(f"cannot read '{uri}': {err}") from err
    return digest.hexdigest()


def exists(uri: str) -> bool:
    """Whether the file or object exists."""
    if not is_s3(uri):
        return Path(uri).is_file()
    bucket, key = split_s3(uri)
    client = s3_client()
    try:
        client.head_object(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise StorageError(f"cannot check '{uri}': {err}") from err
    return True


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file (atomically on local disk: temp file then rename)."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_if_absent(uri: str, data: bytes) -> bool:
    """Create a file only if it does not exist yet; False if it already existed.

    On S3 this is a conditional write (`If-None-Match: *`), so two writers cannot both win.
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        client = s3_client()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        except client.exceptions.ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code in {"PreconditionFailed", "ConditionalRequestConflict"}:
                return False
            raise StorageError(f"cannot write '{uri}': {err}") from err
        return True
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("xb") as handle:
            handle.write(data)
    except FileExistsError:
        return False
    return True


def append_bytes(uri: str, data: bytes) -> None:
    """Add `data` to the end of an append log without rewriting what is there.

    On local disk the file is opened for appending. S3 objects cannot be appended to, so each
    call writes the next numbered part, `<uri>.parts/<NNNNNN>`, and `read_appended` joins them;
    either way a call costs the bytes it adds, not the log's size.
    """
    if not is_s3(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as handle:
            handle.write(data)
        return
    parts = f"{uri}{APPEND_PARTS}"
    write_bytes(join(parts, f"{len(list_names(parts)):06d}"), data)


def read_appended(uri: str) -> bytes:
    """Everything `append_bytes` wrote to `uri` (and a whole object written there before),
    in order; empty when there is nothing."""
    data = read_bytes(uri) if exists(uri) else b""
    if is_s3(uri):
        parts = f"{uri}{APPEND_PARTS}"
        data += b"".join(read_bytes(join(parts, name)) for name in list_names(parts))
    return data


def list_names(prefix_uri: str) -> list[str]:
    """Names of the files directly under a folder/prefix (empty when it does not exist)."""
    if not is_s3(prefix_uri):
        root = Path(prefix_uri)
        return sorted(p.name for p in root.iterdir() if p.is_file()) if root.is_dir() else []
    bucket, prefix = split_s3(prefix_uri.rstrip("/") + "/")
    paginator = s3_client().get_paginator("list_objects_v2")
    names: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        names += [str(obj["Key"])[len(prefix) :] for obj in page.get("Contents", [])]
    return sorted(names)


CHUNK_BYTES = 1 << 20
APPEND_PARTS = ".parts"
"""Suffix of the S3 prefix holding an append log's parts (`append_bytes`)."""
