"""The S3 result store: `s3://<bucket>/results/items/<cache_key>.json`, one record per object.

Same contract as the local `ResultStore` (and the TypeScript worker): a record is finished when
its status is ok or unparseable; an `errored` record is retried and overwritten. Writes are
conditional so two writers racing on one key cannot clobber a finished record:

- a new key is written with `If-None-Match: *` (S3 conditional writes, GA since Aug 2024);
- when the key exists, the record is read back with its ETag; a finished record is kept (the
  key is content-addressed, so the other writer produced an equivalent result), while an
  errored or unreadable record is replaced with `If-Match: <etag>`, so a concurrent change
  between the read and the write makes the write fail and the decision is taken again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import ValidationError

from dapt_eval.layout import RESULTS_PREFIX
from dapt_eval.results import FINISHED_STATUSES, ItemResult

WriteOutcome = Literal["created", "replaced", "kept_finished"]
DEFAULT_ITEMS_PREFIX = RESULTS_PREFIX
DEFAULT_FETCH_CONCURRENCY = 32


class InvalidRecordError(ValueError):
    """An object under the items prefix is not a valid `ItemResult` for its key."""

    def __init__(self, message: str, etag: str | None = None) -> None:
        super().__init__(message)
        self.etag = etag


@dataclass(frozen=True)
class Fetched:
    """One expected key read from S3: its record, or why there is none."""

    cache_key: str
    record: ItemResult | None
    problem: str | None = None

    @property
    def missing(self) -> bool:
        """No object at all under the key (the unit never ran or never finished writing)."""
        return self.record is None and self.problem is None


class S3ResultStore:
    """Result records in S3, read and written with bounded concurrency."""

    def __init__(
        self,
        bucket: str,
        prefix: str = DEFAULT_ITEMS_PREFIX,
        client: Any | None = None,
        concurrency: int = DEFAULT_FETCH_CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"S3ResultStore 'concurrency' = {concurrency} must be >= 1")
        self.bucket = bucket
        self.prefix = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        self.concurrency = concurrency
        self.client = client if client is not None else make_s3_client(concurrency)

    def object_key(self, cache_key: str) -> str:
        """The S3 key of a record."""
        return f"{self.prefix}{cache_key}.json"

    def uri(self, cache_key: str) -> str:
        """`s3://bucket/key` of a record, for messages."""
        return f"s3://{self.bucket}/{self.object_key(cache_key)}"

    def get(self, key: str) -> ItemResult | None:
        """The stored record, or None when absent; an invalid object raises InvalidRecordError."""
        fetched = self.fetch(key)
        if fetched.problem is not None:
            raise InvalidRecordError(fetched.problem)
        return fetched.record

    def is_finished(self, key: str) -> bool:
        """Finished = ok or unparseable; an `errored` record is retried by the next run."""
        fetched = self.fetch(key)
        return fetched.record is not None and fetched.record.status in FINISHED_STATUSES

    def put(self, result: ItemResult) -> None:
        """Store `result` under its cache key; see `write` for the conditional rules."""
        self.write(result)

    def write(self, result: ItemResult) -> WriteOutcome:
        """Create the record, or replace an errored/unreadable one; never replace a finished one.

        Only the existing record decides: an `errored` result replaces an `errored` record (its
        error and attempts are newer) but never an `ok` one.
        """
        body = result.to_line().encode("utf-8")
        key = self.object_key(result.cache_key)
        if self._put(key, body, IfNoneMatch="*"):
            return "created"
        for _ in range(DEFAULT_WRITE_ATTEMPTS):
            try:
                existing, etag = self._read(result.cache_key)
            except InvalidRecordError as err:  # a corrupt record is not finished: replace it
                existing, etag = None, err.etag
            if existing is None and etag is None:  # deleted since: create again
                if self._put(key, body, IfNoneMatch="*"):
                    return "created"
                continue
            if existing is not None and existing.status in FINISHED_STATUSES:
                return "kept_finished"
            if self._put(key, body, IfMatch=etag):
                return "replaced"
        raise RuntimeError(
            f"{self.uri(result.cache_key)}: gave up after {DEFAULT_WRITE_ATTEMPTS} conditional "
            "writes, the object keeps changing under concurrent writers"
        )

    def fetch(self, key: str) -> Fetched:
        """Read one key; an unreadable object is reported as a problem, not raised."""
        try:
            record, _ = self._read(key)
        except InvalidRecordError as err:
            return Fetched(key, None, str(err))
        return Fetched(key, record)

    def fetch_many(self, keys: Iterable[str]) -> Iterator[Fetched]:
        """Read the given keys, `concurrency` at a time, yielding in the order given."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            yield from pool.map(self.fetch, keys)

    def _read(self, key: str) -> tuple[ItemResult | None, str | None]:
        """(record, etag), or (None, None) when absent; an invalid object raises with its ETag."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as err:
            if _error_code(err) in NOT_FOUND_CODES:
                return None, None
            raise
        etag = str(response["ETag"])
        text = response["Body"].read().decode("utf-8")
        try:
            record = ItemResult.model_validate_json(text)
        except ValidationError as err:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<record>'}: {e['msg']}"
                for e in err.errors()
            )
            raise _invalid(self.uri(key), problem, etag) from err
        if record.cache_key != key:
            raise _invalid(
                self.uri(key), f"record cache_key '{record.cache_key}' != object key", etag
            )
        return record, etag

    def _put(self, key: str, body: bytes, **condition: Any) -> bool:
        """True when written; False when the condition failed (412) or raced (409)."""
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                **condition,
            )
        except ClientError as err:
            if _error_code(err) in CONDITION_FAILED_CODES:
                return False
            raise
        return True


def _invalid(uri: str, problem: str, etag: str) -> InvalidRecordError:
    return InvalidRecordError(f"{uri} is not a valid result record: {problem}", etag)


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def make_s3_client(concurrency: int = DEFAULT_FETCH_CONCURRENCY) -> Any:
    """An S3 client whose connection pool is as large as the thread pool that shares it."""
    config = Config(
        max_pool_connections=max(concurrency, DEFAULT_MIN_POOL),
        retries={"mode": "standard", "max_attempts": DEFAULT_SDK_ATTEMPTS},
    )
    return boto3.client("s3", config=config)


DEFAULT_MIN_POOL = 10
DEFAULT_SDK_ATTEMPTS = 5  # S3 503 SlowDown is transient; the SDK's standard mode retries it
DEFAULT_WRITE_ATTEMPTS = 5
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
CONDITION_FAILED_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
