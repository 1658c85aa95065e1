"""Model setup shared by full fine-tuning and LoRA: load, adapt, checkpoint activations, compile,
shard. LoRA adds only the adapter wrapping; everything else is the same code path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dapt_trainer.config import ComputeConfig, MethodConfig


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (world of one when not launched by torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    """Processes on this node (they share the node's token cache)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world_size > 1

    @staticmethod
    def from_env() -> Dist:
        return Dist(
            rank=int(os.environ.get("RANK", "0")),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
            world_size=int(os.environ.get("WORLD_SIZE", "1")),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
        )


def setup_device(dist: Dist) -> torch.device:
    """The device of this rank; joins the process group when the world has more than one rank."""
    if torch.cuda.is_available():
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if dist.sharded and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return device


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer  # noqa: PLC0415 - heavy import, after HF_HUB_OFFLINE

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def load_base(
    path: Path,
    device: torch.device,
    attention: str = "auto",
    packed_batches: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """Hugging Face causal LM from local files only, on the CPU: fp32 master weights, or the
    frozen base of a LoRA run in bf16 (``base_dtype``). ``packed_batches``: forwards get several
    rows of packed documents (see ``attention_implementation``)."""
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    model = AutoModelForCausalLM.from_pretrained(
        str(path),
        dtype=dtype,
        local_files_only=True,
        attn_implementation=attention_implementation(attention, device, packed_batches),
    )
    model.config.use_cache = False
    return model


def empty_base(
    path: Path,
    device: torch.device,
    attention: str = "auto",
    packed_batches: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """The same model as ``load_base`` on the meta device: shapes and dtypes, no storage and no
    file read but ``config.json`` and ``generation_config.json`` (what the ranks that do not
    load the weights build). The generation config as ``from_pretrained`` reads it: its EOS ids
    (Llama-3's ``<|eot_id|>``) end the answers of the evaluation by generation on every rank."""
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig  # noqa: PLC0415

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            config,
            dtype=dtype,
            attn_implementation=attention_implementation(attention, device, packed_batches),
        )
    if (path / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(path), local_files_only=True)
    model.config.use_cache = False
    return model


def bf16_compute(compute: ComputeConfig, device: torch.device, sharded: bool) -> bool:
    """Whether forwards run in bf16: on a GPU when ``precision`` is bf16 (autocast on one GPU,
    FSDP2's ``param_dtype`` when sharded); on a CPU only single-process with ``cpu_bf16``
    (autocast; the sharded CPU runs of the tests stay fp32)."""
    if compute.precision != "bf16":
        return False
    return device.type == "cuda" or (compute.cpu_bf16 and not sharded)


def base_dtype(
    compute: ComputeConfig, method: MethodConfig, device: torch.device, sharded: bool
) -> torch.dtype:
    """The dtype the base weights are kept in. Full fine-tuning: fp32 master weights (the
    optimizer updates them). LoRA: the frozen base is never updated, so where forwards run in
    bf16 it is kept in bf16 (half the bytes; the forward would cast it to bf16 anyway); the
    adapters stay fp32, as PEFT's ``autocast_adapter_dtype`` (default) upcasts them."""
    if method.name == "lora" and bf16_compute(compute, device, sharded):
        return torch.bfloat16
    return torch.float32


def attention_implementation(
    attention: str, device: torch.device, packed_batches: bool = False
) -> str:
    """The kernel ``auto`` stands for: flash-attention 2 where it is installed, except for
    forwards of several packed rows (transformers keeps packed documents apart under flash
    attention only at batch size 1; the config refuses that combination when it is explicit),
    else SDPA."""
    if attention != "auto":
        return attention
    if device.type == "cuda" and not packed_batches:
        try:
            import flash_attn  # type: ignore[import-not-found]  # noqa: F401, PLC0415

            return "flash_attention_2"
        except ImportError:
            pass
    return "sdpa"


def apply_method(model: Any, method: MethodConfig) -> Any:
    """Full fine-tuning keeps every weight trainable; LoRA wraps the target modules (PEFT)."""
    if method.name == "full":
        return model
    from peft import LoraConfig, get_peft_model  # noqa: PLC0415

    lora = method.lora
    peft_config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        use_dora=lora.dora,
        use_rslora=lora.rslora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks (the unit of sharding, checkpointing and compilation)."""
    names = set(getattr(_hf_model(model), "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"no decoder layers found in {type(model).__name__} (looked for {names})")
    return layers


def _hf_model(model: nn.Module) -> Any:
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def setup_model(
    path: Path,
    method: MethodConfig,
    compute: ComputeConfig,
    dist: Dist,
    device: torch.device,
    packed_batches: bool = False,
) -> Any:
    """Load, adapt, checkpoint activations, compile and shard (in that order).

    Sharded, no rank materialises the whole model on its accelerator, and only rank 0 reads
    the weights (into CPU memory, once per job): every rank builds the model on the meta device,
    shards it, allocates its shards and receives them from rank 0 (``load_sharded``). A 70B
    model thus needs its weights once in rank 0's host memory, not once per rank on the GPU.
    """
    dtype = base_dtype(compute, method, device, dist.sharded)
    options = (device, compute.attention, packed_batches, dtype)
    if not dist.sharded:
        model = apply_method(load_base(path, *options), method)
        _wrap_layers(model, compute)
        return model.to(device)
    # Rank 0 first, with the RNG as the recipe seeded it: the adapters it initialises are
    # those of a single-process run, and every rank receives them.
    full = apply_method(load_base(path, *options), method) if dist.is_main else None
    model = apply_method(empty_base(path, *options), method)
    _wrap_layers(model, compute)
    shard(model, compute, device)
    load_sharded(model, full, device)
    return model


def _wrap_layers(model: nn.Module, compute: ComputeConfig) -> None:
    if compute.activation_checkpointing:
        enable_activation_checkpointing(model)
    if compute.compile:
        for layer in decoder_layers(model):
            layer.compile()


def load_sharded(model: nn.Module, full: nn.Module | None, device: torch.device) -> None:
    """Allocate this rank's shards of a sharded meta-device ``model`` and fill them from rank
    0's ``full`` CPU model (None on the other ranks), one tensor at a time
    (``set_model_state_dict`` with ``broadcast_from_rank0``). Buffers are not sharded: they
    are broadcast whole (the rotary ``inv_freq`` is not in the state dict)."""
    from torch.distributed.checkpoint.state_dict import (  # noqa: PLC0415
        StateDictOptions,
        set_model_state_dict,
    )

    model.to_empty(device=device)
    weights = full.state_dict() if full is not None else {}
    set_model_state_dict(
        model, weights, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    )
    sources = dict(full.named_buffers()) if full is not None else {}
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name in sources:
                buffer.copy_(sources[name])
            torch.distributed.broadcast(buffer, src=0)
    del weights, sources, full


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute each decoder layer's activations in the backward pass.

    Non-reentrant checkpointing works with frozen inputs (LoRA) and with FSDP2. transformers
    5.23 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable`` (the
    old name warns and goes in v6); earlier 5.x releases only have the old name.
    """
    hf = _hf_model(model)
    options = {"use_reentrant": False}
    if hasattr(hf, "activation_checkpointing_enable"):
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def shard(model: nn.Module, compute: ComputeConfig, device: torch.device) -> None:
    """FSDP2: each decoder layer is a unit, then the root (embeddings, norm, head).

    bf16 parameters for compute with fp32 gradient reduction and fp32 master weights, as in
    torchtitan. On CPU (gloo, tests) everything stays fp32. The model may be on the meta
    device (``setup_model``): its shards are then allocated by ``load_sharded``.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard  # noqa: PLC0415

    bf16 = bf16_compute(compute, device, sharded=True)
    policy = MixedPrecisionPolicy(
        param_dtype=torch.bfloat16 if bf16 else torch.float32, reduce_dtype=torch.float32
    )
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs per trained token, torchtitan's convention (no recomputation, no masking savings);
    the logged MFU counts the attention the kernel runs instead (``step_flops``, ``flops.py``).

    full: ``6 * N + 12 * L * H * Q * T``
    LoRA: ``4 * N_frozen + 6 * N_lora + 12 * L * H * Q * T``: frozen weights cost a forward
    (2) and the backward through activations (2) but no weight gradient; adapter weights cost
    all three (6). ``N`` excludes the input embedding (a lookup, not a matmul); ``L`` layers,
    ``H`` heads, ``Q`` head dim, ``T`` = ``seq_len``. The LM head is a matmul whether or not
    its weight is tied to the input embedding (SmolLM2, Llama-3.2-1B): a tied head is counted
    once, as the head.
    """

    per_token: float
    n_params: int
    n_trainable: int
    dense_per_token: float = 0.0
    """The weights' part of ``per_token`` (``6 N`` or ``4 N_frozen + 6 N_lora``)."""
    attention_per_pair: float = 0.0
    """``12 L H Q``: FLOPs of one (query, key) pair in every head and layer, forward and
    backward; ``per_token``'s attention term is this times ``T``."""

    def step_flops(self, tokens: int, attention_pairs: int) -> float:
        """Model FLOPs of a step of ``tokens`` non-pad tokens whose attention kernel computed
        ``attention_pairs`` (query, key) pairs (``flops.attention_pairs``)."""
        return self.dense_per_token * tokens + self.attention_per_pair * attention_pairs

    @staticmethod
    def of(model: nn.Module, config: Any, seq_len: int) -> FlopCount:
        hf = _hf_model(model)
        head = hf.get_output_embeddings()
        head_ids = {id(p) for p in head.parameters()} if head is not None else set()
        # The lookup costs no FLOPs; a weight it shares with the head is the head's matmul.
        embed_ids = {id(p) for p in hf.get_input_embeddings().parameters()} - head_ids
        params = [p for p in model.parameters() if id(p) not in embed_ids]
        n_trainable = sum(_numel(p) for p in params if p.requires_grad)
        n_frozen = sum(_numel(p) for p in params if not p.requires_grad)
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        per_pair = 12 * config.num_hidden_layers * heads * head_dim
        dense = 6 * n_trainable + 4 * n_frozen
        return FlopCount(
            float(dense + per_pair * seq_len),
            n_trainable + n_frozen,
            n_trainable,
            float(dense),
            float(per_pair),
        )


def _numel(p: torch.Tensor) -> int:
    # Under FSDP2 a parameter is a DTensor whose numel() is the global size.
    return int(p.numel())


def mfu(tokens_per_second: float, flops_per_token: float, peak_flops: float, world: int) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of all accelerators."""
    return tokens_per_second * flops_per_token / (peak_flops * world)
