"""Preflight: prove the GPUs, NCCL and EFA work before paying for a long run.

Run under torchrun on every node (`torchrun --nproc_per_node=8 -m dapt_trainer.preflight`, which
is what the `preflight` Batch job definition does). It checks that the EFA devices reached the
container, then times all-reduces of growing sizes and reports bus bandwidth the way nccl-tests
does (busbw = algbw * 2 * (n - 1) / n), failing when the largest size is below a floor.

Environment:
  PREFLIGHT_MIN_BUSBW_GBPS  fail below this bus bandwidth at the largest size (default 0: off)
  PREFLIGHT_MAX_BYTES       largest message size in bytes (default 1 GiB on GPU, 1 MiB on CPU)
  PREFLIGHT_ITERATIONS      timed iterations per size (default 10)
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Measurement:
    """One message size: mean time and bandwidths in GB/s."""

    bytes: int
    seconds: float
    algbw_gbps: float
    busbw_gbps: float


def bus_bandwidth(bytes_: int, seconds: float, world_size: int) -> tuple[float, float]:
    """Algorithm and bus bandwidth of an all-reduce, as nccl-tests defines them (GB/s)."""
    algbw = bytes_ / seconds / 1e9
    factor = 2 * (world_size - 1) / world_size if world_size > 1 else 1.0
    return algbw, algbw * factor


def efa_problems() -> list[str]:
    """What is missing for EFA when the job asks for it (FI_PROVIDER=efa)."""
    if os.environ.get("FI_PROVIDER") != "efa":
        return []
    if not glob.glob("/dev/infiniband/uverbs*"):
        return [
            "FI_PROVIDER=efa but no /dev/infiniband/uverbs* device is in the container: "
            "the job definition must map the EFA devices and the AMI must load the EFA driver"
        ]
    return []


def measure(max_bytes: int, iterations: int, device: torch.device) -> list[Measurement]:
    """Times all-reduce for sizes 8 B .. max_bytes (x8 steps) after one warm-up each."""
    world_size = dist.get_world_size()
    results: list[Measurement] = []
    size = 8
    while size <= max_bytes:
        tensor = torch.ones(size // 4, dtype=torch.float32, device=device)
        dist.all_reduce(tensor)  # warm-up: connection setup is not bandwidth
        _sync(device)
        start = time.perf_counter()
        for _ in range(iterations):
            dist.all_reduce(tensor)
        _sync(device)
        seconds = (time.perf_counter() - start) / iterations
        algbw, busbw = bus_bandwidth(size, seconds, world_size)
        results.append(Measurement(size, seconds, algbw, busbw))
        size *= 8
    return results


def _sync(device: torch.device) -> None:
    # The timing must cover the collective itself, which runs asynchronously on a CUDA stream.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    """Run the checks; exit 1 on a missing device or too little bandwidth."""
    problems = efa_problems()
    on_gpu = torch.cuda.is_available()
    if on_gpu:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend="nccl" if on_gpu else "gloo")
    try:
        default_max = DEFAULT_MAX_BYTES_GPU if on_gpu else DEFAULT_MAX_BYTES_CPU
        max_bytes = int(os.environ.get("PREFLIGHT_MAX_BYTES", default_max))
        iterations = int(os.environ.get("PREFLIGHT_ITERATIONS", DEFAULT_ITERATIONS))
        floor = float(os.environ.get("PREFLIGHT_MIN_BUSBW_GBPS", "0"))
        results = measure(max_bytes, iterations, device)
        largest = results[-1]
        if floor > 0 and largest.busbw_gbps < floor:
            problems.append(
                f"bus bandwidth {largest.busbw_gbps:.1f} GB/s at {largest.bytes} bytes is below "
                f"PREFLIGHT_MIN_BUSBW_GBPS={floor}"
            )
        if dist.get_rank() == 0:
            report = {
                "world_size": dist.get_world_size(),
                "backend": dist.get_backend(),
                "results": [asdict(r) for r in results],
                "problems": problems,
            }
            print(json.dumps(report), flush=True)
    finally:
        dist.destroy_process_group()
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    return 1 if problems else 0


DEFAULT_MAX_BYTES_GPU = 1 << 30
DEFAULT_MAX_BYTES_CPU = 1 << 20
DEFAULT_ITERATIONS = 10

if __name__ == "__main__":
    sys.exit(main())
