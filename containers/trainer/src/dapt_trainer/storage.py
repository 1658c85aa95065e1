"""Local paths and ``s3://`` URIs behind one small set of functions."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> (``bucket``, ``a/b``)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"S3 URI '{uri}' has no bucket")
    return bucket, key


def join(base: str, *parts: str) -> str:
    """Join path segments for a local path or an S3 prefix."""
    if is_s3(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


@cache
def _client() -> Any:
    import boto3  # noqa: PLC0415 - imported lazily so local-only runs never need credentials

    return boto3.client("s3")


def reset_client() -> None:
    """Forget the cached client (tests switch between moto contexts)."""
    _client.cache_clear()


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        body: bytes = _client().get_object(Bucket=bucket, Key=key)["Body"].read()
        return body
    return Path(uri).read_bytes()


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fingerprint(uri: str) -> str:
    """What changes when a file's content changes: size and mtime locally, ETag (and version
    id) in S3. Keys the token cache; a file rewritten in place gets a new fingerprint."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        head = _client().head_object(Bucket=bucket, Key=key)
        return f"{head['ContentLength']}:{head['ETag']}:{head.get('VersionId', '')}"
    st = Path(uri).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def is_missing(err: BaseException) -> bool:
    """Whether a read failed because the file (or its bucket) is not there."""
    if isinstance(err, FileNotFoundError):
        return True
    code = getattr(err, "response", {}).get("Error", {}).get("Code")  # botocore's ClientError
    return code in {"NoSuchKey", "NoSuchBucket", "404"}


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        resp = _client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(o["Key"] == key for o in resp.get("Contents", []))
    return Path(uri).exists()


def list_children(prefix: str) -> list[str]:
    """Names of the immediate children (files and folders) under a directory or S3 prefix."""
    if is_s3(prefix):
        bucket, key = split_s3(prefix)
        key = key.rstrip("/") + "/" if key else ""
        names: set[str] = set()
        for page in (
            _client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=key, Delimiter="/")
        ):
            names.update(
                p["Prefix"][len(key) :].rstrip("/") for p in page.get("CommonPrefixes", [])
            )
            names.update(o["Key"][len(key) :] for o in page.get("Contents", []))
        return sorted(n for n in names if n)
    path = Path(prefix)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


def upload_dir(local: Path, prefix: str, skip: tuple[str, ...] = ()) -> None:
    """Copy every file under ``local`` to ``prefix`` (S3 or local), preserving relative paths."""
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = path.relative_to(local).as_posix()
        if rel in skip:
            continue
        if is_s3(prefix):
            bucket, key = split_s3(join(prefix, rel))
            _client().upload_file(str(path), bucket, key)
        else:
            dest = Path(prefix, rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


def prefix_fingerprint(prefix: str, keep: Callable[[str], bool] | None = None) -> str:
    """What changes when an object under an S3 prefix changes (key, size and ETag of each, or
    of those whose relative path ``keep`` accepts)."""
    h = hashlib.sha256(prefix.encode())
    for rel, obj in _objects(prefix, keep):
        h.update(f"{rel}\0{obj['Size']}\0{obj['ETag']}\n".encode())
    return h.hexdigest()[:16]


def download_dir_once(prefix: str, root: Path, keep: Callable[[str], bool] | None = None) -> Path:
    """A local copy of an S3 prefix under ``root``, keyed by the prefix and its objects' ETags:
    downloaded into a temporary folder and renamed into place, so an interrupted download is
    never taken for a complete one and a changed object gets a new copy. ``keep``: only the
    objects whose relative path it accepts (e.g. the tokenizer's files)."""
    local = root / prefix_fingerprint(prefix, keep)
    if local.exists():
        return local
    partial = root / f".{local.name}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    bucket, _ = split_s3(prefix)
    for rel, obj in _objects(prefix, keep):
        dest = partial / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        _client().download_file(bucket, obj["Key"], str(dest))
    try:
        os.replace(partial, local)
    except OSError:  # another process of the node finished the same copy first
        shutil.rmtree(partial, ignore_errors=True)
    return local


def _objects(prefix: str, keep: Callable[[str], bool] | None) -> Iterator[tuple[str, Any]]:
    bucket, key = split_s3(prefix)
    key = key.rstrip("/") + "/"
    for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(key) :]
            if rel and (keep is None or keep(rel)):
                yield rel, obj


def download_dir(prefix: str, local: Path) -> Path:
    """Copy every object under an S3 prefix into ``local``; a local ``prefix`` is returned as is."""
    if not is_s3(prefix):
        return Path(prefix)
    bucket, key = split_s3(prefix)
    key = key.rstrip("/") + "/"
    for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
        for obj in page.get("Contents", []):
            dest = local / obj["Key"][len(key) :]
            dest.parent.mkdir(parents=True, exist_ok=True)
            _client().download_file(bucket, obj["Key"], str(dest))
    return local


def remove_tree(uri: str) -> None:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        key = key.rstrip("/") + "/"
        for page in _client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objects:
                _client().delete_objects(Bucket=bucket, Delete={"Objects": objects})
        return
    shutil.rmtree(uri, ignore_errors=True)


def cache_dir() -> Path:
    """Where S3 models and checkpoints are staged locally (``DAPT_CACHE``, else /tmp)."""
    return Path(os.environ.get("DAPT_CACHE", DEFAULT_CACHE))


DEFAULT_CACHE = "/tmp/dapt-cache"
