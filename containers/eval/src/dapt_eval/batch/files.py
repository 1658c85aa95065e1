"""Inputs of the batch job: local directories or `s3://` prefixes copied to local scratch.

Nothing is fetched from a model hub: a model is a directory in Hugging Face format (config,
tokenizer files, safetensors) that training wrote to the models bucket. Its default revision
is a hash of its content, so two different checkpoints can never share cache keys.
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from dapt_eval.hashing import sha256_file


class InputError(ValueError):
    """An input URI is malformed, empty, or unsafe to copy."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> (bucket, "prefix/"); the prefix always ends with '/'."""
    if not uri.startswith("s3://"):
        raise InputError(f"'{uri}' is not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise InputError(f"'{uri}' has no bucket name")
    return bucket, (prefix.rstrip("/") + "/") if prefix.strip("/") else ""


def local_dir(uri: str, scratch: Path, client: Any | None = None) -> Path:
    """The directory for `uri`: itself when local, else a copy of the S3 prefix in `scratch`."""
    if not uri.startswith("s3://"):
        path = Path(uri)
        if not path.is_dir():
            raise InputError(f"{path} is not a directory")
        return path
    bucket, prefix = split_s3_uri(uri)
    target = scratch / bucket / prefix
    download_prefix(bucket, prefix, target, client)
    return target


def download_prefix(bucket: str, prefix: str, target: Path, client: Any | None = None) -> int:
    """Copy every object under `prefix` to `target` (same relative paths); returns the count.

    Objects already present with the same size are not downloaded again, so a retried job
    reuses its scratch disk. Keys that would escape `target` ('..') are refused.
    """
    if client is None:
        import boto3  # noqa: PLC0415 - only S3 inputs need a client

        client = boto3.client("s3")
    paginator = client.get_paginator("list_objects_v2")
    copied = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = PurePosixPath(str(obj["Key"])[len(prefix) :])
            if not relative.parts or str(obj["Key"]).endswith("/"):
                continue  # "folder" marker objects
            if ".." in relative.parts:
                raise InputError(f"s3://{bucket}/{obj['Key']} escapes the download directory")
            path = target.joinpath(*relative.parts)
            if path.is_file() and path.stat().st_size == int(obj["Size"]):
                copied += 1
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, str(obj["Key"]), str(path))
            copied += 1
    if copied == 0:
        raise InputError(f"s3://{bucket}/{prefix} holds no objects")
    return copied


def content_revision(directory: Path) -> str:
    """`sha256:<16 hex>` over every file's relative path and sha256, in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(f"{directory} holds no files")
    for path in files:
        digest.update(f"{path.relative_to(directory).as_posix()}\0{sha256_file(path)}\n".encode())
    return f"sha256:{digest.hexdigest()[:REVISION_HEX_CHARS]}"


REVISION_HEX_CHARS = 16
