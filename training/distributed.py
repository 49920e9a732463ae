"""Process-group setup for torchrun (DDP) that degrades to a plain single process.

``torchrun --nproc_per_node N -m training.train ...`` sets RANK / LOCAL_RANK / WORLD_SIZE; without
them (``python -m training.train``) everything here is a no-op on one device. NCCL on GPUs, gloo on CPU.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None: not distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is 'cuda' but no CUDA device is available")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def setup_distributed(device_preference: str = "auto", timeout_s: int = 1800) -> DistInfo:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    if world_size <= 1:
        return DistInfo(0, 0, 1, device, None)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": datetime.timedelta(seconds=timeout_s)}
        if backend == "nccl":
            kwargs["device_id"] = device
        dist.init_process_group(**kwargs)
    return DistInfo(rank, local_rank, world_size, device, backend)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum over ranks in place (no-op on one process); returns the tensor."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    all_reduce_sum(tensor, info)
    if info.distributed:
        tensor /= info.world_size
    return tensor


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


class ResumableBatchSampler(torch.utils.data.Sampler):
    """Deterministic, resumable, sharded batch order.

    The order of epoch ``e`` is a function of (seed, e) only: one permutation of the dataset from a
    private generator (the global RNG is never touched), truncated to a whole number of global
    batches (world_size * batch_size), and rank r takes every world_size-th index from offset r.
    ``set_epoch(e, skip_batches=k)`` starts the epoch after its first k batches of this rank, which
    is how a resumed run continues exactly where the checkpoint left off.
    """

    def __init__(
        self, num_samples: int, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.skip = 0
        self.batches_per_epoch = num_samples // (batch_size * world_size)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training set has {num_samples} samples, fewer than one global batch "
                f"(batch_size {batch_size} x {world_size} processes)"
            )

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        if not 0 <= skip_batches <= self.batches_per_epoch:
            raise ValueError(f"skip_batches {skip_batches} outside [0, {self.batches_per_epoch}]")
        self.epoch = epoch
        self.skip = skip_batches

    def epoch_indices(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        order = order[: self.batches_per_epoch * self.batch_size * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self):
        mine = self.epoch_indices(self.epoch)
        for b in range(self.skip, self.batches_per_epoch):
            yield mine[b * self.batch_size : (b + 1) * self.batch_size]

    def __len__(self) -> int:
        return self.batches_per_epoch - self.skip


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation: rank r reads indices r, r + world, ... (no padding, so no sample is counted twice)."""

    def __init__(self, num_samples: int, rank: int = 0, world_size: int = 1, limit: int = 0) -> None:
        n = num_samples if limit <= 0 else min(num_samples, limit)
        self.indices = list(range(rank, n, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
