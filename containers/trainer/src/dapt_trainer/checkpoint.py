"""Resumable checkpoints, written atomically, locally or to S3.

Layout of one checkpoint (``<stage output>/checkpoints/step-00000100/``)::

    dcp/                 model (trainable weights only for LoRA) + optimizer (torch DCP)
    trainer_state.pt     step, scheduler, data stream state (mixture counters, packing window)
    rng-rank<R>.pt       python / numpy / torch (+ CUDA) RNG states of rank R
    config.yaml          the experiment config the run was started with
    COMPLETE             written last; a checkpoint without it is ignored on resume

Locally the files go to ``.step-00000100.partial/``, the marker is written, then the folder is
renamed. On S3 the files are staged on local disk, uploaded, and ``COMPLETE`` is uploaded last.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from dapt_trainer.model import Dist
from dapt_trainer.storage import (
    download_dir,
    exists,
    is_s3,
    join,
    list_children,
    read_bytes,
    remove_tree,
    upload_dir,
    write_bytes,
)


class ResumeError(ValueError):
    """The newest checkpoint cannot continue this config (it was saved with another one); the
    message names the checkpoint and every key that changed."""


@dataclass(frozen=True)
class Restored:
    step: int
    data_state: dict[str, Any]
    global_batch_rows: int | None = None
    """Rows per optimizer step on all ranks when it was saved (None: an older checkpoint)."""


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def latest_complete(root: str) -> str | None:
    """URI of the newest checkpoint under ``root`` that has its COMPLETE marker."""
    steps = sorted(n for n in list_children(root) if STEP_PATTERN.fullmatch(n))
    for name in reversed(steps):
        if exists(join(root, name, MARKER)):
            return join(root, name)
    return None


def _barrier(dist: Dist) -> None:
    if dist.sharded:
        torch.distributed.barrier()


def _options(trainable_only: bool) -> StateDictOptions:
    # Frozen base weights are not saved (they come from the base model), so they are not required.
    return StateDictOptions(ignore_frozen_params=trainable_only, strict=not trainable_only)


def save_checkpoint(
    root: str,
    staging: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    data_state: dict[str, Any],
    config_yaml: str,
    dist: Dist,
    trainable_only: bool,
    keep_last: int,
    global_batch_rows: int | None = None,
) -> str:
    """Save everything needed to continue at ``step``; returns the checkpoint URI."""
    name = step_name(step)
    local = staging / name if is_s3(root) else Path(root) / f".{name}.partial"
    if dist.local_rank == 0:
        shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True)
    _barrier(dist)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options(trainable_only))
    dcp_save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(local / "dcp"))
    torch.save(_rng_state(), local / f"rng-rank{dist.rank}.pt")
    if dist.is_main:
        trainer_state = {
            "step": step,
            "scheduler": scheduler.state_dict(),
            "data": data_state,
            "global_batch_rows": global_batch_rows,
        }
        torch.save(trainer_state, local / "trainer_state.pt")
        (local / "config.yaml").write_text(config_yaml, encoding="utf-8")
    _barrier(dist)
    final = join(root, name)
    if is_s3(root):
        if dist.local_rank == 0:  # one uploader per node: its staging folder holds its ranks' files
            upload_dir(local, final)
        _barrier(dist)
        if dist.is_main:
            write_bytes(join(final, MARKER), json.dumps({"step": step}).encode())
            shutil.rmtree(local, ignore_errors=True)
    elif dist.is_main:
        (local / MARKER).write_text(json.dumps({"step": step}), encoding="utf-8")
        _replace(local, Path(final))
    if dist.is_main:
        _prune(root, keep_last)
    _barrier(dist)
    return final


def _replace(new: Path, final: Path) -> None:
    """Put the complete folder ``new`` at ``final``. A complete ``final`` (the same step saved
    before: same step, same state, as resumes are exact) is kept and ``new`` discarded, so there
    is never a moment without a complete checkpoint of the step; an incomplete one is
    replaced."""
    if (final / MARKER).exists():
        shutil.rmtree(new)
        return
    if final.exists():
        shutil.rmtree(final)
    os.replace(new, final)


def saved_config(uri: str) -> str:
    """The config YAML a checkpoint was saved with."""
    return read_bytes(join(uri, "config.yaml")).decode("utf-8")


def load_checkpoint(
    uri: str,
    staging: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    dist: Dist,
    trainable_only: bool,
) -> Restored:
    """Restore model, optimizer, scheduler and this rank's RNG; return step and data state."""
    local = staging / Path(uri.rstrip("/")).name if is_s3(uri) else Path(uri)
    if is_s3(uri) and dist.local_rank == 0:
        shutil.rmtree(local, ignore_errors=True)
        download_dir(uri, local)
    _barrier(dist)
    options = _options(trainable_only)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=options)
    state: dict[str, Any] = {"model": model_sd, "optim": optim_sd}
    dcp_load(state, checkpoint_id=str(local / "dcp"))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
        options=options,
    )
    trainer_state = torch.load(local / "trainer_state.pt", weights_only=False)
    scheduler.load_state_dict(trainer_state["scheduler"])
    rng_file = local / f"rng-rank{dist.rank}.pt"
    if rng_file.exists():  # a resume with a different world size keeps fresh RNG for new ranks
        _set_rng_state(torch.load(rng_file, weights_only=False))
    return Restored(
        step=int(trainer_state["step"]),
        data_state=trainer_state["data"],
        global_batch_rows=trainer_state.get("global_batch_rows"),
    )


def _prune(root: str, keep_last: int) -> None:
    """Delete complete checkpoints beyond the newest ``keep_last``, and stale partial folders."""
    names = sorted(n for n in list_children(root) if STEP_PATTERN.fullmatch(n))
    complete = [n for n in names if exists(join(root, n, MARKER))]
    for name in complete[:-keep_last]:
        remove_tree(join(root, name))
    if not is_s3(root):
        for name in list_children(root):
            if name.endswith(".partial"):
                shutil.rmtree(Path(root, name), ignore_errors=True)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


MARKER = "COMPLETE"
STEP_PATTERN = re.compile(r"step-\d{8}")
