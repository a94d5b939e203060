"""Training on several processes: the process group torchrun describes in the environment, this
process's place in it (`World`), and the collective steps both trainers share: wrapping the model
in DistributedDataParallel, splitting the global batch, summing training metrics, sharing the
evaluation out among ranks, and keeping every rank's random stream in checkpoints.

Outside torchrun a run is a world of one and each helper does what one process would, so the
trainers have a single code path.
"""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, DeviceError
from ..runtime import resolve_device, seed_everything
from .run_folder import RunFolder

# DDP re-broadcasts rank 0's buffers before every forward unless told not to; the option was
# renamed in torch 2.13 (`broadcast_buffers` still works there, with a warning)
_NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                           if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                           else {"broadcast_buffers": False})


def launch_rank() -> tuple:
    """(rank, world size) as the launcher (torchrun) set them in the environment; (0, 1) without one."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@dataclass(frozen=True)
class World:
    """This process's place among the processes of a run: rank 0 of 1 outside torchrun."""

    device: torch.device
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, plots and writes the run folder."""
        return self.rank == 0

    def main_only(self, fn):
        """`fn` on rank 0 and a function that does nothing elsewhere: one process speaks for the run."""
        return fn if self.is_main else (lambda *args, **kwargs: None)

    def share(self, global_batch: int) -> int:
        """This rank's part of the global batch the config states: the ranks split it evenly."""
        if global_batch % self.size:
            raise ConfigError(f"train.batch_size={global_batch} is the global batch and must split evenly "
                              f"over the {self.size} processes")
        return global_batch // self.size

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `model` (gradients averaged over ranks), or `model` itself.

        Callers keep the bare module for checkpoints and evaluation, so state_dict keys carry no
        `module.` prefix and single-process and distributed checkpoints are interchangeable.
        Buffers are not re-broadcast before each forward: the only ones that change, the VQ
        codebook's, are kept equal by the quantizer, which all-reduces its EMA statistics.
        """
        if self.size == 1:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, **_NO_FORWARD_BUFFER_SYNC)

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank (picklable objects)."""
        if self.size == 1:
            return [obj]
        parts = [None] * self.size
        dist.all_gather_object(parts, obj)
        return parts

    def sum(self, values: list) -> list:
        """Each number summed over the ranks: training metrics become those of the global batch."""
        if self.size == 1:
            return [float(v) for v in values]
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def map(self, fn, items) -> list:
        """`[fn(x) for x in items]` with rank r doing items r, r + size, ...; every rank gets all, in order.

        Results do not depend on the number of ranks: each item is computed whole, by one rank.
        """
        parts = self.gather([fn(x) for x in items[self.rank::self.size]])
        return [parts[i % self.size][i // self.size] for i in range(len(items))]

    def start_run(self, config: dict, resume: bool, log) -> tuple:
        """What every training does first: (run folder, log, this rank's batch).

        The run folder is checked on every rank but written by rank 0 alone, and only rank 0 logs;
        threads and seeds are set before anything random is drawn.
        """
        train = config.train
        run = RunFolder(train.out_dir, resume, config, write=self.is_main)
        if train.threads:
            torch.set_num_threads(train.threads)
        seed_everything(train.seed)
        return run, self.main_only(log), self.share(train.batch_size)

    def seed_ranks(self, seed: int) -> None:
        """Give each rank its own random stream from here on (dropout masks, codebook restarts).

        Called once the model is built, so its initial weights are the same everywhere; rank 0
        keeps the stream of a single-process run.
        """
        if self.rank:
            torch.manual_seed(seed * 1_000_003 + self.rank)

    def rng_state(self) -> dict:
        """Checkpoint entries for the random state: rank 0's as `torch_rng` (what a single process
        resumes from) and, in a distributed run, every rank's as `rank_rngs`. A collective call."""
        states = self.gather(torch.get_rng_state())
        return {"torch_rng": states[0], **({"rank_rngs": states} if self.size > 1 else {})}

    def restore_rng(self, checkpoint: dict, seed: int) -> None:
        """Each rank takes back its own stream; resumed on another number of ranks, rank 0 takes the
        saved `torch_rng` and the others start fresh ones."""
        states = checkpoint.get("rank_rngs", [checkpoint["torch_rng"]])
        if len(states) == self.size:
            torch.set_rng_state(states[self.rank])
        else:
            torch.set_rng_state(states[0])
            self.seed_ranks(seed)


def _rank_device(name: str) -> torch.device:
    """Each process of a machine takes the GPU of its local rank; the CPU serves any number."""
    device = resolve_device(name)
    if device.type == "mps":
        raise DeviceError("distributed training runs on CUDA GPUs (NCCL) or on the CPU (gloo), not on MPS")
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise DeviceError(f"device {name!r}: under torchrun each process takes the GPU of its local rank; "
                         "use auto or cuda (and CUDA_VISIBLE_DEVICES to choose the GPUs)")
    local, count = int(os.environ.get("LOCAL_RANK", 0)), torch.cuda.device_count()
    if local >= count:
        raise DeviceError(f"LOCAL_RANK={local} but this machine has {count} CUDA GPU(s): "
                         f"start at most {count} processes per machine")
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


@contextmanager
def joined(device_name: str = "auto"):
    """The World of a training run, for its length.

    Under torchrun it joins the process group the environment describes (NCCL on CUDA, gloo on
    the CPU) and leaves it at the end; a group the caller set up is used and left alone. On a
    normal exit every rank waits for the others, so a run returns only once rank 0's last
    checkpoint is written.
    """
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if not (dist.is_available() and (dist.is_initialized() or launched)):
        yield World(resolve_device(device_name))
        return
    device = _rank_device(device_name)
    owner = not dist.is_initialized()
    if owner:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        world = World(device, dist.get_rank(), dist.get_world_size())
        yield world
        if world.size > 1:
            dist.barrier(device_ids=[device.index] if device.type == "cuda" else None)
    finally:
        if owner:
            dist.destroy_process_group()
