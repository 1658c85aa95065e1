"""``python -m dapt_trainer.launch [torchrun arguments]``: torchrun, ending with the exit code
the job's retry strategy reads.

torchrun (``torch.distributed.run``) handles a SIGTERM by forwarding it to the workers, waiting
``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (default 30) for them to exit, killing those left, and
raising ``SignalException``: a traceback and exit 1, whatever the workers did. A worker that
fails ends torchrun with exit 1 too, so a configuration error (exit 2, never retried) looked
like any failure. The same launch here ends:

- 128 + the signal (143 for SIGTERM) when the launcher was told to stop, after the workers'
  checkpoint (they exit 143 themselves once it is complete);
- the exit code of the first failed worker when one failed (2, 143, ...; 1 for one killed by a
  signal);
- 0 when every worker succeeded.

The workers' grace period is ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT``, ``DEFAULT_SHUTDOWN_TIMEOUT_S``
unless set: under the ECS agent's stop timeout that the GPU nodes' launch template sets
(``lib/constructs/scratch-user-data.ts``), so torchrun never kills a checkpoint that the agent
would have let finish (docs/operations.md, "Stopping a training job").
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException  # noqa: PLC0415
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError  # noqa: PLC0415
    from torch.distributed.run import parse_args, run  # noqa: PLC0415

    os.environ.setdefault(SHUTDOWN_TIMEOUT_ENV, str(DEFAULT_SHUTDOWN_TIMEOUT_S))
    args = parse_args(argv)  # type: ignore[no-untyped-call]  # torch leaves it untyped
    try:
        run(args)  # type: ignore[no-untyped-call]
    except SignalException as err:
        sig = signal.Signals(err.sigval)
        _event("stopped", signal=sig.name, exit_code=128 + sig.value)
        return 128 + sig.value
    except ChildFailedError as err:
        rank, first = err.get_first_failure()
        # A negative exit code is a worker killed by that signal (e.g. OOM-killed): a failure.
        code = first.exitcode if first.exitcode > 0 else 1
        if code != EXIT_INTERRUPTED:
            print(err.format_msg(), file=sys.stderr, flush=True)  # type: ignore[no-untyped-call]
        _event("worker_failed", rank=rank, worker_exit_code=first.exitcode, exit_code=code)
        return code
    return 0


def _event(event: str, **fields: object) -> None:
    print(json.dumps({"event": f"launcher_{event}", **fields}), file=sys.stderr, flush=True)


EXIT_INTERRUPTED: int = json.loads(
    Path(__file__).with_name("job_contract.json").read_text(encoding="utf-8")
)["exitCodes"]["interrupted"]
"""What a worker exits with after its SIGTERM checkpoint (not imported from ``cli``: the
launcher process needs torch's launcher only)."""
SHUTDOWN_TIMEOUT_ENV = "TORCH_ELASTIC_SHUTDOWN_TIMEOUT"
DEFAULT_SHUTDOWN_TIMEOUT_S = 100
"""Seconds torchrun waits for the workers after a SIGTERM before it kills them: under the
ECS agent's stop timeout of the GPU nodes (110 s, within Spot's two-minute notice), so that the
launcher itself still exits 143 before the agent's SIGKILL."""

if __name__ == "__main__":
    sys.exit(main())
