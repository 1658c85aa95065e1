"""Adaptive concurrency against a provider that throttles above a limit (not a test).

    PYTHONPATH=src ../../.venv/bin/python bench/bench_throttle.py \
        [--n 1200] [--limit 8] [--latency-ms 100] [--retry-after-s 1] [--fixed 4,8,32] \
        [--ceiling 32]

A simulated OpenAI-compatible server runs in this process (stdlib ThreadingHTTPServer): it serves
at most `--limit` requests at a time, each taking `--latency-ms`, and answers any request beyond
that with HTTP 429 and `Retry-After: --retry-after-s`. The runner is not told the limit. Each
configuration runs `dapt_eval.runner.run_benchmark` with the real OpenAI provider (httpx) and the
default retry policy over N classification items into a fresh result store: first the fixed
concurrencies a user would otherwise pick (`--min-concurrency` = `--concurrency`), then the
adaptive limit (floor 1, ceiling `--ceiling`). The ideal is limit / latency requests per second.
Printed per run: wall time, served requests per second and as a share of the ideal, 429 answers,
items lost (no finished record), items served more than once, errored records. Nothing is
written to the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from dapt_eval.benchmark import Manifest, load_benchmark, write_manifest
from dapt_eval.hashing import sha256_file
from dapt_eval.prompts import DEFAULT_PROMPTS
from dapt_eval.providers.openai_compat import OpenAICompatibleProvider
from dapt_eval.results import ResultStore
from dapt_eval.runner import RunConfig, run_benchmark
from dapt_eval.schemas import Task

LABELS = ["billing", "refund", "login", "other"]


@dataclass
class ServerStats:
    """What the simulated server saw (guarded by `lock`)."""

    limit: int
    latency_s: float
    retry_after_s: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    peak: int = 0
    throttled: int = 0
    served: Counter[str] = field(default_factory=Counter)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    stats: ClassVar[ServerStats]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        stats = self.stats
        with stats.lock:
            busy = stats.in_flight >= stats.limit
            if busy:
                stats.throttled += 1
            else:
                stats.in_flight += 1
                stats.peak = max(stats.peak, stats.in_flight)
        if busy:
            self._reply(
                429,
                {"error": {"message": "Rate limit reached", "type": "rate_limit_exceeded"}},
                {"Retry-After": f"{stats.retry_after_s:g}"},
            )
            return
        time.sleep(stats.latency_s)
        prompt = body["messages"][0]["content"]
        with stats.lock:
            stats.in_flight -= 1
            stats.served[prompt] += 1
        self._reply(
            200,
            {
                "choices": [{"message": {"role": "assistant", "content": "billing"}}],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 1},
            },
        )

    def _reply(
        self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request would dominate the output."""


def make_benchmark(root: Path, n: int) -> Path:
    """N classification items with a manifest, as `dapt-eval build` writes them."""
    root.mkdir(parents=True)
    rows = [{"id": f"i{i}", "text": f"ticket number {i}", "label": LABELS[i % 4]} for i in range(n)]
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    manifest = Manifest(
        name="bench-intents",
        version="1",
        task=Task.CLASSIFICATION,
        prompt=DEFAULT_PROMPTS[Task.CLASSIFICATION],
        labels=LABELS,
        items_sha256=sha256_file(root / "items.jsonl"),
        created_by="bench_throttle",
    )
    write_manifest(root, manifest)
    return root


def run_once(
    label: str, benchmark_root: Path, out: Path, floor: int, ceiling: int, args: argparse.Namespace
) -> None:
    stats = ServerStats(args.limit, args.latency_ms / 1000, args.retry_after_s)
    handler = type("Handler", (_Handler,), {"stats": stats})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        provider = OpenAICompatibleProvider(
            f"http://127.0.0.1:{server.server_address[1]}", "sim", revision="1"
        )
        store = ResultStore(out)
        config = RunConfig(run_id=label, concurrency=ceiling, min_concurrency=floor)
        started = time.perf_counter()
        summary = run_benchmark(load_benchmark(benchmark_root), provider, config, store)
        wall = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
    records = list(store)
    finished = {r.cache_key for r in records if r.status in ("ok", "unparseable")}
    served = sum(stats.served.values())
    twice = sum(1 for count in stats.served.values() if count > 1)
    ideal = args.limit / (args.latency_ms / 1000)
    rate = served / wall
    print(
        f"| {label} | {wall:.2f} | {rate:.1f} | {rate / ideal * 100:.1f}% | {stats.throttled} "
        f"| {stats.peak} | {args.n - len(finished)} | {twice} | {summary.errored} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N)
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT)
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS)
    parser.add_argument("--retry-after-s", type=float, default=DEFAULT_RETRY_AFTER_S)
    parser.add_argument("--fixed", default=DEFAULT_FIXED, help="fixed concurrencies, a,b,c")
    parser.add_argument("--ceiling", type=int, default=DEFAULT_CEILING)
    args = parser.parse_args()
    ideal = args.limit / (args.latency_ms / 1000)
    print(
        f"adaptive concurrency benchmark (Python runner): N={args.n} items, server limit "
        f"{args.limit} in flight (not told), latency {args.latency_ms:g} ms, 429 with Retry-After "
        f"{args.retry_after_s:g} s above it; ideal {ideal:.1f} requests/s; Python "
        f"{platform.python_version()}, {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}"
    )
    print(
        "| concurrency | wall (s) | served/s | of ideal | 429s | peak in flight | lost "
        "| served twice | errored |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_benchmark(Path(tmp) / "bench", args.n)
        runs = [(f"fixed {c}", c, c) for c in (int(x) for x in args.fixed.split(",") if x)]
        runs.append((f"adaptive 1..{args.ceiling}", 1, args.ceiling))
        for index, (label, floor, ceiling) in enumerate(runs):
            run_once(label, root, Path(tmp) / f"out-{index}", floor, ceiling, args)


DEFAULT_N = 1200
DEFAULT_LIMIT = 8
DEFAULT_LATENCY_MS = 100.0
DEFAULT_RETRY_AFTER_S = 1.0
DEFAULT_FIXED = "4,8,32"
DEFAULT_CEILING = 32

if __name__ == "__main__":
    main()
