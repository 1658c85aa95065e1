"""Serve a model folder behind an OpenAI-compatible HTTP API: `transformers serve`.

A maintained server (Hugging Face's own, in `transformers[serving]`) rather than one written
here: it applies the model's chat template to `/v1/chat/completions`, batches concurrent
requests (`--continuous-batching`), and is what a user of this stack would run. The server is
pinned to one folder; requests name that folder as their model. It does not return prompt
log-likelihoods (`/v1/completions` ignores `echo` and `logprobs`), so the scoring modes that
need them read the same folder's files directly (see `dapt_local.evaluate`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from dapt_local.config import ServeSection


class ServeError(RuntimeError):
    """The server did not come up; the message ends with its last log lines."""


@dataclass(frozen=True)
class Served:
    """A running server: where to send requests and what to call the model."""

    base_url: str
    model: str
    log: Path


@contextmanager
def serving(model_dir: Path, settings: ServeSection, log: Path) -> Iterator[Served]:
    """Run `transformers serve` on `model_dir` until the block ends."""
    port = settings.port or free_port(settings.host)
    command = [
        _transformers_cli(), "serve", str(model_dir),
        "--host", settings.host, "--port", str(port),
        "--device", "cpu", "--dtype", settings.dtype, "--log-level", "warning",
    ]  # fmt: skip
    if settings.continuous_batching:
        command.append("--continuous-batching")
        if settings.cb_max_batch_tokens is not None:
            command += ["--cb-max-batch-tokens", str(settings.cb_max_batch_tokens)]
        if settings.cb_block_size is not None:
            command += ["--cb-block-size", str(settings.cb_block_size)]
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://{settings.host}:{port}"
    try:
        _wait_until_healthy(process, base_url, settings.startup_timeout_s, log)
        yield Served(base_url, str(model_dir), log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port(host: str) -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(
    process: subprocess.Popen[bytes], base_url: str, timeout_s: float, log: Path
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"transformers serve exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code == HTTP_OK:
                return
        except httpx.HTTPError:
            pass
        time.sleep(POLL_S)
    raise ServeError(f"transformers serve was not healthy after {timeout_s:.0f} s:\n{_tail(log)}")


def _transformers_cli() -> str:
    """The `transformers` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("transformers")
    return str(beside) if beside.exists() else shutil.which("transformers") or "transformers"


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


HTTP_OK = 200
POLL_S = 0.5
STOP_TIMEOUT_S = 15
