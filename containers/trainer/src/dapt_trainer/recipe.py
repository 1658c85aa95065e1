"""The training recipe: setup -> train -> save_checkpoint -> export -> cleanup, per stage.

Full fine-tuning and LoRA share every method; the method config only changes which parameters
train (``model.apply_method``), what a checkpoint holds (trainable weights) and what the export
writes (LoRA also writes the adapter alone).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from dapt_trainer.adapter_archive import ADAPTER_ARCHIVE, archive_adapter
from dapt_trainer.checkpoint import (
    ResumeError,
    latest_complete,
    load_checkpoint,
    save_checkpoint,
    saved_config,
)
from dapt_trainer.config import (
    ExperimentConfig,
    OptimizerConfig,
    StageConfig,
    dump_config,
    packs_rows_in_batches,
    parse_config,
    resume_changes,
)
from dapt_trainer.data.cache import (
    NoDataError,
    TokenizedSource,
    no_data_problems,
    tokenized_sources,
)
from dapt_trainer.data.prefetch import Prefetcher
from dapt_trainer.data.readers import Quarantined, resolve_data
from dapt_trainer.data.stream import (
    Batch,
    PackedStream,
    heldout_batches,
    pad_id,
    step_batches,
)
from dapt_trainer.data.tokenize import IGNORE_INDEX, use_chat_template
from dapt_trainer.flops import attention_pairs
from dapt_trainer.generation_eval import GenerationTask, evaluate_generation, load_task
from dapt_trainer.lineage import build_lineage
from dapt_trainer.loss import chunkable_head, token_loss_sum
from dapt_trainer.metrics import TENSORBOARD_DIR, MetricsLog
from dapt_trainer.model import (
    Dist,
    FlopCount,
    apply_method,
    bf16_compute,
    load_base,
    load_tokenizer,
    mfu,
    setup_model,
    trainable_parameters,
)
from dapt_trainer.storage import (
    cache_dir,
    download_dir_once,
    exists,
    is_s3,
    join,
    read_bytes,
    upload_dir,
    write_bytes,
)


class StopFlag:
    """Set by SIGTERM (AWS Batch job termination, Spot reclaim); read at step boundaries."""

    def __init__(self) -> None:
        self.requested = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True


@dataclass
class StepData:
    """One optimizer step's micro batches for this rank, and the stream as it stands after them."""

    batches: list[Batch]
    real_tokens: int
    """Non-padding tokens of the step's rows on all ranks (the global batch)."""
    stream_state: dict[str, Any]
    packing_efficiency: float
    attention_pairs: int = 0
    """(query, key) pairs the attention kernel computes for this rank's micro batches."""


@dataclass
class StageResult:
    stage: str
    status: str
    """``complete``, ``skipped`` (already complete) or ``interrupted`` (checkpointed on stop)."""
    step: int
    losses: list[float] = field(default_factory=list)
    """Training loss of every step run in this process (for tests and the bench)."""
    heldout: dict[str, float] = field(default_factory=dict)
    output: str = ""


def setup_optimizer(
    params: list[nn.Parameter], cfg: OptimizerConfig, steps: int, device: torch.device
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (fused kernel on GPU) and a warmup + decay schedule."""
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps))


def lr_factor(cfg: OptimizerConfig, steps: int) -> Callable[[int], float]:
    """Multiplier of the peak lr at a step: linear warmup, then cosine/linear decay to
    ``min_lr_ratio``, or constant."""

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / (cfg.warmup_steps + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = min((step - cfg.warmup_steps) / max(steps - cfg.warmup_steps, 1), 1.0)
        decay = (
            0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
        )
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return factor


def token_cache_location(experiment: ExperimentConfig, output: str) -> str:
    """Where tokenised sources are shared between nodes, instances and runs."""
    return experiment.token_cache or join(output, experiment.experiment, "token-cache")


class PublishError(RuntimeError):
    """``--tokenize-only`` could not put a source's tokens in the shared cache."""


def prepare_token_caches(experiment: ExperimentConfig, output: str) -> list[dict[str, Any]]:
    """Tokenise every stage's sources and publish them to the shared token cache: what
    ``dapt-train --tokenize-only`` runs, on any CPU machine, before the GPU job."""
    shared = token_cache_location(experiment, output)
    summary = []
    for stage in experiment.stages:
        tokenizer = use_chat_template(
            load_tokenizer(tokenizer_folder(experiment, stage)), stage.data.chat_template
        )
        sources = list(resolve_data(stage.data).sources)
        opened = tokenized_sources(
            sources, tokenizer, cache_dir() / "tokens", shared=shared, publish=True
        )
        problems = no_data_problems(opened)
        if problems:  # not worth a GPU job: it would stop at the same place
            raise NoDataError(f"stage {stage.name!r}: " + "; ".join(problems))
        missing = [s.path.name for s in opened if not _published(join(shared, s.path.name))]
        if missing:
            raise PublishError(
                f"stage {stage.name}: {missing} could not be published to {shared} (see the "
                "token_cache events' problems; may this role write there?)"
            )
        summary += [
            {
                "stage": stage.name,
                "source": source.config.name,
                "cache": join(shared, source.path.name),
                "documents": source.n_docs,
                "tokens": source.n_tokens,
                "quarantined": len(source.quarantined),
            }
            for source in opened
        ]
    return summary


def _published(entry: str) -> bool:
    try:
        return exists(join(entry, "meta.json"))
    except Exception:  # e.g. a bucket that does not exist or may not be listed
        return False


def tokenizer_folder(experiment: ExperimentConfig, stage: StageConfig) -> Path:
    """The tokenizer a stage will train with, without its weights: a stage that starts from an
    earlier one's output uses the tokenizer that output is saved with, i.e. its origin's."""
    origin = stage
    while origin.model.from_stage is not None:
        origin = experiment.stage(origin.model.from_stage)
    uri = str(origin.model.path)
    if not is_s3(uri):
        return Path(uri)
    return download_dir_once(uri, cache_dir() / "tokenizers", is_tokenizer_file)


def is_tokenizer_file(name: str) -> bool:
    """Whether a file of a model folder is one a tokenizer loads (not a weight shard)."""
    return "/" not in name and (name.startswith(TOKENIZER_FILES) or name.endswith(".model"))


def stage_output(experiment: ExperimentConfig, output: str, stage: StageConfig) -> str:
    return join(output, experiment.experiment, stage.name)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
"""Endings of the weight files of a model folder (also Meta's ``original/*.pth``); the index
``model.safetensors.index.json`` and every other small file are not weights."""


def is_weight_file(name: str) -> bool:
    return name.endswith(WEIGHT_SUFFIXES)


def resolve_model_path(
    experiment: ExperimentConfig, output: str, stage: StageConfig, dist: Dist
) -> Path:
    """Local folder of the starting weights (S3 models are staged under the cache). Only
    global rank 0 reads the weights (``setup_model`` loads them there and broadcasts the
    shards; export and lineage run there too): every other rank builds the model from
    ``config.json`` on the meta device and loads the tokenizer, so it stages every file but
    the weights (a 70B model's ~140 GB would otherwise be downloaded on every node)."""
    if stage.model.from_stage is not None:
        uri = join(
            stage_output(experiment, output, experiment.stage(stage.model.from_stage)),
            "final",
            "model",
        )
    else:
        uri = str(stage.model.path)
    if not is_s3(uri):
        return Path(uri)
    keep = None if dist.is_main else (lambda rel: not is_weight_file(rel))
    return download_dir_once(uri, cache_dir() / "models", keep)


TOKENIZER_FILES = ("tokenizer", "special_tokens", "chat_template", "vocab", "merges")
"""Name prefixes of the files a Hugging Face tokenizer loads from a model folder."""
PREFETCH_STEPS = 2
"""Optimizer steps of batches built ahead of the one training."""
HELDOUT_BEFORE = "heldout_before.json"
"""Held-out losses of the starting weights, measured before step 1 (``eval_at_start``)."""
GENERATION_EVAL = "generation_eval.json"
"""``final/``'s scores of the evaluation by generation after the last step."""
S3_EVENT_FILE = "events.out.tfevents.dapt"
"""The TensorBoard event file's name on S3 (TensorBoard reads any file named `*tfevents*`)."""


class StageRecipe:
    """One stage of an experiment on this rank."""

    def __init__(
        self,
        experiment: ExperimentConfig,
        stage: StageConfig,
        output: str,
        dist: Dist,
        device: torch.device,
        stop: Callable[[int], bool] | None = None,
    ) -> None:
        self.experiment = experiment
        self.stage = stage
        self.dist = dist
        self.device = device
        self.output = output
        self.out = stage_output(experiment, output, stage)
        self.local_out = (
            cache_dir() / "runs" / experiment.experiment / stage.name
            if is_s3(self.out)
            else Path(self.out)
        )
        self.stop = stop or (lambda _step: False)
        self.lora = stage.method.name == "lora"
        self.step = 0
        self.saved_step = 0
        """The step whose state is already in a complete checkpoint (0: the starting weights,
        which need none)."""
        compute = experiment.compute
        self.autocast = not dist.sharded and bf16_compute(compute, device, dist.sharded)
        # Sharded LoRA reduce-scatters once per step; the unsharded adapter gradients it holds
        # between micro batches are small. Full fine-tuning reduce-scatters every micro batch:
        # unsharded fp32 gradients of every weight would not fit (memory.py).
        self.defer_grad_sync = dist.sharded and self.lora

    # -- setup ---------------------------------------------------------------------------------

    def setup(self) -> None:
        # Before anything reads the sources: groups and shares may come from their manifests.
        self.stage = self.stage.model_copy(update={"data": resolve_data(self.stage.data)})
        latest = latest_complete(join(self.out, "checkpoints"))
        if latest is not None:  # before any loading: a checkpoint of another config is refused
            self.check_resumable(latest)
        torch.manual_seed(self.experiment.seed)  # identical initial weights (adapters) on all ranks
        self.model_path = resolve_model_path(self.experiment, self.output, self.stage, self.dist)
        self.tokenizer = use_chat_template(
            load_tokenizer(self.model_path), self.stage.data.chat_template
        )
        self.generation_tasks = [load_task(t, self.tokenizer) for t in self.stage.eval_generation]
        self.model = setup_model(
            self.model_path,
            self.stage.method,
            self.experiment.compute,
            self.dist,
            self.device,
            packed_batches=packs_rows_in_batches(self.stage),
        )
        self.optimizer, self.scheduler = setup_optimizer(
            trainable_parameters(self.model), self.stage.optimizer, self.stage.steps, self.device
        )
        # Adapters start identical on every rank (seeded above); from here each rank draws its
        # own dropout masks. The data order has seeds of its own and stays the same on all.
        torch.manual_seed(self.experiment.seed + self.dist.rank)
        self.sources, self.stream = self.setup_data()
        self.data_state = self.stream.state_dict()
        self._prefetch: Prefetcher[StepData] | None = None
        self.last_record: dict[str, Any] | None = None
        self.generation_scores: dict[str, Any] | None = None
        """The last evaluation by generation (``final/generation_eval.json``)."""
        self.flops = FlopCount.of(self.model, self.model.config, self.stage.data.seq_len)
        self.pad_id = pad_id(self.tokenizer)
        self.attention_kernel = str(getattr(self.model.config, "_attn_implementation", "sdpa"))
        if self.experiment.compute.loss_chunk_tokens is not None and not chunkable_head(self.model):
            self._log_event(
                "loss_unchunked",
                model_type=getattr(self.model.config, "model_type", None),
                reason="the model changes the logits after its head, or the head is not a "
                "plain linear layer: the whole micro batch's logits are computed at once",
            )
        self.metrics = MetricsLog(
            self.local_out / "metrics.jsonl",
            {"Experiment": self.experiment.experiment, "Stage": self.stage.name},
            enabled=self.dist.is_main,
            tensorboard=self.experiment.tensorboard,
        )
        if latest is not None:
            restored = load_checkpoint(
                latest,
                self._staging(),
                self.model,
                self.optimizer,
                self.scheduler,
                self.dist,
                trainable_only=self.lora,
            )
            rows = self._global_batch_rows()
            if restored.global_batch_rows not in (None, rows):
                raise ResumeError(
                    f"checkpoint {latest} was saved with {restored.global_batch_rows} rows per "
                    f"step (micro_batch_size x grad_accum_steps x ranks), this run has {rows}; "
                    "change micro_batch_size or grad_accum_steps to match the new world size"
                )
            self.step = self.saved_step = restored.step
            self.stream.load_state_dict(restored.data_state)
            self.data_state = self.stream.state_dict()
            self._restore_metrics()
            self._log_event("resumed", checkpoint=latest, step=self.step)
        else:  # a fresh start: what an earlier attempt logged before any checkpoint is redone
            self.metrics.keep_until(-1)

    def check_resumable(self, checkpoint: str) -> None:
        """Raise ResumeError naming every change that makes ``checkpoint`` another run's."""
        saved = parse_config(yaml.safe_load(saved_config(checkpoint)), checkpoint)
        changes = resume_changes(saved, self.experiment, self.stage.name)
        if changes:
            raise ResumeError(
                f"checkpoint {checkpoint} was saved with a different config; it cannot continue "
                "this one (restore the config it was saved with, or train under a new "
                "experiment name). Changed: " + "; ".join(changes)
            )

    def setup_data(self) -> tuple[list[TokenizedSource], PackedStream]:
        """Tokenise the sources into the node's cache (once), open them, build the stream.

        The quarantine report is written before the stream is built: it is what explains a
        source with no usable row, which stops the stage here (NoDataError, exit 2)."""
        sources = tokenized_sources(
            list(self.stage.data.sources),
            self.tokenizer,
            cache_dir() / "tokens",
            self.dist.local_rank,
            self.dist.local_world_size,
            shared=token_cache_location(self.experiment, self.output),
            publish=self.dist.rank < self.dist.local_world_size,  # the first node's processes
        )
        self._report_quarantine("data", sources, self._eval_quarantined())
        problems = no_data_problems(sources)
        if problems:
            report = self.local_out / "quarantine.jsonl"
            raise NoDataError(f"stage {self.stage.name!r}: " + "; ".join(problems) + f" ({report})")
        stream = PackedStream(
            self.stage.data, sources, self.experiment.seed, pad_id(self.tokenizer)
        )
        return sources, stream

    def next_step_data(self) -> StepData:
        """The next step's batches, built ahead on a background thread."""
        if self._prefetch is None:
            self._prefetch = Prefetcher(self._produce_step, depth=PREFETCH_STEPS)
        return self._prefetch.get()

    def _produce_step(self) -> StepData:
        stream, stage, dist = self.stream, self.stage, self.dist
        before = stream.stats["real_tokens"]
        batches = step_batches(
            stream, stage.micro_batch_size, stage.grad_accum_steps, dist.rank, dist.world_size
        )
        pairs = sum(
            attention_pairs(b.input_ids, b.position_ids, self.pad_id, self.attention_kernel)
            for b in batches
        )
        if self.device.type == "cuda":
            batches = [b.pin_memory() for b in batches]  # lets the copy to the GPU overlap
        return StepData(
            batches,
            stream.stats["real_tokens"] - before,
            stream.state_dict(),  # fresh containers: later rows do not change it
            stream.packing_efficiency(),
            pairs,
        )

    def stop_prefetch(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None

    # -- train ---------------------------------------------------------------------------------

    def loss_sum(self, batch: Batch) -> torch.Tensor:
        """Summed token cross-entropy of a micro batch (fp32), targets already shifted."""
        batch = batch.to(self.device)
        return token_loss_sum(
            self.model,
            batch.input_ids,
            batch.position_ids,
            batch.targets,
            self.experiment.compute.loss_chunk_tokens,
            self.autocast,
        )

    def train(self) -> StageResult:
        stage = self.stage
        if (
            self.step == 0
            and stage.eval_at_start
            and (self._has_heldout() or self.generation_tasks)
        ):
            before = self.evaluate()  # the base model's held-out loss: what training changes
            if before:
                self._write_local(HELDOUT_BEFORE, json.dumps(before, indent=2))
            self.metrics.write({"step": 0, **self._evaluation_record(before)})
        self.model.train()
        losses: list[float] = []
        while self.step < stage.steps:
            if self._agreed(self.stop(self.step)):
                self.stop_prefetch()
                # Not before step 1 (a checkpoint would initialise the optimizer state: a fake
                # step), nor twice for a step (a stop that arrives during a periodic save).
                if self.step != self.saved_step:
                    self.save_checkpoint()
                self._log_event("interrupted", step=self.step, checkpointed=self.saved_step)
                return StageResult(stage.name, "interrupted", self.step, losses, output=self.out)
            record = self.train_step()
            self.last_record = record
            losses.append(record["loss"])
            if self.step % stage.log_every == 0 or self.step == stage.steps:
                self.metrics.write(record)
            if self.step % stage.checkpoint.every_steps == 0 and self.step < stage.steps:
                self.save_checkpoint()
            if stage.eval_every and self.step % stage.eval_every == 0:
                self.metrics.write({"step": self.step, **self._evaluation_record(self.evaluate())})
        self.stop_prefetch()
        self._report_quarantine(
            "data_final", self.sources, self.stream.quarantined + self._eval_quarantined()
        )
        heldout = self.evaluate()
        if self.generation_tasks and not (stage.eval_every and self.step % stage.eval_every == 0):
            self.metrics.write({"step": self.step, **self._evaluation_record(heldout)})
        self.export(heldout)
        return StageResult(stage.name, "complete", self.step, losses, heldout, self.out)

    def train_step(self) -> dict[str, Any]:
        """One optimizer step over ``grad_accum_steps`` micro batches.

        The loss is normalised by the target tokens of the whole accumulation window on all
        ranks, so the gradient is the mean over every target token of the step whatever the
        micro batch / accumulation / world split. FSDP averages gradients over ranks, hence
        the ``world_size`` factor.
        """
        dist = self.dist
        start = time.perf_counter()
        data = self.next_step_data()
        batches = data.batches
        # One all-reduce for both: the step's target tokens and attention pairs on all ranks.
        local = [float(sum(b.n_targets for b in batches)), float(data.attention_pairs)]
        counts = self._sum(torch.tensor(local, dtype=torch.float64))
        n_targets, pairs = int(counts[0].item()), int(counts[1].item())
        scale = dist.world_size / max(n_targets, 1)
        total = torch.zeros((), device=self.device)
        for i, batch in enumerate(batches):
            if self.defer_grad_sync:
                self.model.set_requires_gradient_sync(i == len(batches) - 1)
            loss = self.loss_sum(batch)
            (loss * scale).backward()  # type: ignore[no-untyped-call]
            total += loss.detach()
        grad_norm = self._clip()
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.data_state = data.stream_state
        loss_value = float(self._sum(total).item()) / max(n_targets, 1)  # a CPU-GPU sync point
        elapsed = time.perf_counter() - start
        real_tokens = data.real_tokens
        tokens_per_s = real_tokens / elapsed
        return {
            "step": self.step,
            "loss": loss_value,
            "lr": lr,
            "grad_norm": grad_norm,
            "tokens": real_tokens,
            "target_tokens": n_targets,
            "tokens_per_s": tokens_per_s,
            "step_time_s": elapsed,
            "mfu": mfu(
                tokens_per_s,
                self.flops.step_flops(real_tokens, pairs) / max(real_tokens, 1),
                self.experiment.compute.peak_flops,
                dist.world_size,
            ),
            "packing_efficiency": data.packing_efficiency,
        }

    def _clip(self) -> float:
        max_norm = self.stage.optimizer.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(trainable_parameters(self.model), max_norm)
        full = getattr(norm, "full_tensor", None)  # a DTensor under FSDP2
        return float((full() if callable(full) else norm).item())

    def _sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.to(self.device)
        if self.dist.sharded:
            torch.distributed.all_reduce(value)
        return value

    def _agreed(self, local_stop: bool) -> bool:
        """Stop when any rank was told to stop, so all ranks checkpoint together."""
        if not self.dist.sharded:
            return local_stop
        flag = torch.tensor(float(local_stop), device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    # -- evaluate ------------------------------------------------------------------------------

    def _evaluation_record(self, heldout: dict[str, float]) -> dict[str, float]:
        """A metrics record's evaluation fields: held-out losses, then generation scores."""
        scores = evaluate_generation(
            self.model, self.tokenizer, self.generation_tasks, self.dist, self.device, self.autocast
        )
        if self.generation_tasks:
            self.generation_scores = {
                "step": self.step,
                "tasks": _by_task(self.generation_tasks, scores),
            }
        return {**_prefixed(heldout), **scores}

    def _eval_quarantined(self) -> list[Quarantined]:
        return [q for task in self.generation_tasks for q in task.quarantined]

    def _has_heldout(self) -> bool:
        return any(s.n_heldout for s in self.sources)

    def _write_local(self, name: str, text: str) -> None:
        """A small file of the stage's own output (copied next to the checkpoints on S3)."""
        if self.dist.is_main:
            self.local_out.mkdir(parents=True, exist_ok=True)
            (self.local_out / name).write_text(text, encoding="utf-8")
            if is_s3(self.out):
                write_bytes(join(self.out, name), text.encode("utf-8"))

    def heldout_before(self) -> dict[str, float] | None:
        """The held-out losses measured before the first step, if this stage measured them."""
        path = self.local_out / HELDOUT_BEFORE
        if path.exists():
            loaded: dict[str, float] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
        remote = join(self.out, HELDOUT_BEFORE)
        if is_s3(self.out) and exists(remote):
            fetched: dict[str, float] = json.loads(read_bytes(remote))
            return fetched
        return None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean token loss per source on its held-out examples (all ranks share the work)."""
        per_source = heldout_batches(
            self.sources, self.stage.data, pad_id(self.tokenizer), self.stage.micro_batch_size
        )
        self.model.eval()
        out = {}
        for name, batches in per_source.items():
            total = torch.zeros(2, device=self.device)
            rounds = math.ceil(len(batches) / self.dist.world_size)
            for i in range(rounds):
                index = i * self.dist.world_size + self.dist.rank
                # Every rank runs the same number of forwards (FSDP all-gathers in lockstep).
                batch = batches[index] if index < len(batches) else _no_targets(batches[0])
                total[0] += self.loss_sum(batch)
                total[1] += batch.n_targets
            total = self._sum(total)
            out[name] = float(total[0] / total[1].clamp(min=1))
        self.model.train()
        return out

    # -- checkpoint and export -----------------------------------------------------------------

    def save_checkpoint(self) -> str:
        start = time.perf_counter()
        uri = save_checkpoint(
            join(self.out, "checkpoints"),
            self._staging(),
            self.step,
            self.model,
            self.optimizer,
            self.scheduler,
            self.data_state,
            dump_config(self.experiment),
            self.dist,
            trainable_only=self.lora,
            keep_last=self.stage.checkpoint.keep_last,
            global_batch_rows=self._global_batch_rows(),
        )
        self.saved_step = self.step
        self._sync_outputs()
        # How long a save takes tells whether a SIGTERM checkpoint fits the stop window.
        seconds = round(time.perf_counter() - start, 2)
        self._log_event("checkpoint", uri=uri, step=self.step, seconds=seconds)
        return uri

    def export(self, heldout: dict[str, float]) -> None:
        """``final/model`` (merged HF safetensors + tokenizer), ``final/adapter`` and
        ``final/adapter.tar.gz`` (as SageMaker serves it) for LoRA,
        ``final/heldout.json``, ``final/generation_eval.json`` (the scores after the last step,
        when the stage evaluates by generation), ``final/lineage.json``, then
        ``final/COMPLETE``."""
        full_sd = get_model_state_dict(
            self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        if self.dist.is_main:
            staging = self.local_out / ".final.partial"
            shutil.rmtree(staging, ignore_errors=True)
            # A fresh CPU copy: the same path whether or not the training model is sharded.
            fresh = apply_method(load_base(self.model_path, torch.device("cpu")), self.stage.method)
            fresh.load_state_dict(full_sd)
            if self.lora:
                fresh.save_pretrained(str(staging / "adapter"))
                # The same adapter as SageMaker serves it (one archive, files at its root).
                archive_adapter(staging / "adapter", staging / ADAPTER_ARCHIVE)
                fresh = fresh.merge_and_unload()
            if self.experiment.compute.precision == "bf16":
                fresh = fresh.to(torch.bfloat16)
            fresh.config.use_cache = True
            fresh.save_pretrained(str(staging / "model"))  # always safetensors since v5
            self.tokenizer.save_pretrained(str(staging / "model"))
            (staging / "heldout.json").write_text(json.dumps(heldout, indent=2), encoding="utf-8")
            if self.generation_scores is not None:
                (staging / GENERATION_EVAL).write_text(
                    json.dumps(self.generation_scores, indent=2), encoding="utf-8"
                )
            before = self.heldout_before()
            if before is not None:
                (staging / HELDOUT_BEFORE).write_text(json.dumps(before, indent=2), "utf-8")
            lineage = build_lineage(
                self.experiment,
                self.stage,
                self.model_path,
                self.stage.model.path or f"stage:{self.stage.model.from_stage} ({self.model_path})",
                self.sources,
                self.data_state,
                self.step,
                self.dist.world_size,
                heldout,
                self.last_record,
                self.heldout_before(),
                self.generation_scores,
            )
            (staging / "lineage.json").write_text(json.dumps(lineage, indent=2), encoding="utf-8")
            final = join(self.out, "final")
            if is_s3(final):
                upload_dir(staging, final)
                write_bytes(join(final, "COMPLETE"), b"{}")
                shutil.rmtree(staging)
            else:
                (staging / "COMPLETE").write_text("{}", encoding="utf-8")
                shutil.rmtree(final, ignore_errors=True)
                os.replace(staging, final)
            self._sync_outputs()
        if self.dist.sharded:
            torch.distributed.barrier()

    def cleanup(self) -> None:
        self.stop_prefetch()
        self.metrics.close()
        del self.model, self.optimizer
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- helpers -------------------------------------------------------------------------------

    def _global_batch_rows(self) -> int:
        stage = self.stage
        return stage.micro_batch_size * stage.grad_accum_steps * self.dist.world_size

    def _staging(self) -> Path:
        return cache_dir() / "staging" / self.experiment.experiment / self.stage.name

    def _sync_outputs(self) -> None:
        """Copy metrics, the TensorBoard event file and quarantine reports next to the
        checkpoints when output is S3 (the event file under one fixed name: a rebuilt one, whose
        local name differs, replaces it rather than joining it)."""
        if self.dist.is_main and is_s3(self.out):
            for name in ("metrics.jsonl", "quarantine.jsonl"):
                path = self.local_out / name
                if path.exists():
                    write_bytes(join(self.out, name), path.read_bytes())
            events = self.metrics.tensorboard.event_file() if self.metrics.tensorboard else None
            if events is not None:
                write_bytes(join(self.out, TENSORBOARD_DIR, S3_EVENT_FILE), events.read_bytes())

    def _restore_metrics(self) -> None:
        """``metrics.jsonl`` as it stood at the resumed checkpoint: fetched from S3 on a new
        instance (so the upload after the next checkpoint keeps the history), the records a
        dead process wrote after the checkpoint dropped (they are logged again)."""
        if not self.dist.is_main:
            return
        local, remote = self.local_out / "metrics.jsonl", join(self.out, "metrics.jsonl")
        if not local.exists() and is_s3(self.out) and exists(remote):
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(read_bytes(remote))
        self.metrics.keep_until(self.step)

    def _report_quarantine(
        self, event: str, sources: list[TokenizedSource], during_run: list[Quarantined]
    ) -> None:
        """Write ``quarantine.jsonl`` (rows rejected when reading or tokenising, and documents
        found unusable during the run) and log the counts per source."""
        if not self.dist.is_main:
            return
        rows = [q for s in sources for q in s.quarantined] + list(during_run)
        self.local_out.mkdir(parents=True, exist_ok=True)
        with (self.local_out / "quarantine.jsonl").open("w", encoding="utf-8") as f:
            for q in rows:
                f.write(json.dumps(q.as_dict()) + "\n")
        counts: dict[str, int] = {}
        for q in rows:
            counts[q.source] = counts.get(q.source, 0) + 1
        self._log_event(
            event,
            quarantined=len(rows),
            quarantined_by_source=counts,
            train_examples={s.config.name: s.n_train for s in sources},
            tokens={s.config.name: s.n_tokens for s in sources},
        )

    def _log_event(self, event: str, **fields: Any) -> None:
        if self.dist.is_main:
            print(json.dumps({"event": event, "stage": self.stage.name, **fields}), flush=True)


def run_experiment(
    experiment: ExperimentConfig,
    output: str,
    dist: Dist,
    device: torch.device,
    stop: Callable[[int], bool] | None = None,
) -> list[StageResult]:
    """Run the stages in order; a stage whose ``final/COMPLETE`` exists is skipped."""
    results = []
    for stage in experiment.stages:
        out = stage_output(experiment, output, stage)
        if exists(join(out, "final", "COMPLETE")):
            results.append(StageResult(stage.name, "skipped", stage.steps, output=out))
            continue
        recipe = StageRecipe(experiment, stage, output, dist, device, stop)
        recipe.setup()
        result = recipe.train()
        recipe.cleanup()
        results.append(result)
        if result.status != "complete":
            break
    return results


def _no_targets(batch: Batch) -> Batch:
    return Batch(batch.input_ids, torch.full_like(batch.targets, IGNORE_INDEX), batch.position_ids)


def _by_task(tasks: list[GenerationTask], scores: dict[str, float]) -> dict[str, Any]:
    """``generation/<task>/<score>`` fields as ``{task: {"items": n, <score>: value}}``."""
    out: dict[str, Any] = {}
    for task in tasks:
        prefix = f"generation/{task.config.name}/"
        named = {k.removeprefix(prefix): v for k, v in scores.items() if k.startswith(prefix)}
        out[task.config.name] = {"items": len(task.items), **named}
    return out


def _prefixed(heldout: dict[str, float]) -> dict[str, float]:
    return {f"heldout_loss/{k}": v for k, v in heldout.items()}
