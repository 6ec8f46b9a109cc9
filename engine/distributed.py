"""Runs on several processes, GPUs or machines through ``torch.distributed`` (launched by ``torchrun``).

The engine does not bring its own distributed machinery: ``torchrun`` starts one process per
GPU (or per CPU slot) on each node and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; this module reads them, joins the
process group (NCCL on GPUs, gloo on CPUs) and offers the few pieces the training loop and the
sharded segmentation need:

* :func:`init_process_group` / :func:`rank_info` / :func:`is_main` / :func:`barrier`;
* :class:`GlobalBatchSampler`: the sample order of a single process with the *global* batch
  (per-rank batch x world size), each rank taking its contiguous part of every global batch;
  :class:`StridedBatchSampler` for evaluation (whole batches dealt round-robin);
* :func:`all_reduce_sum`, :func:`broadcast_json`, :func:`broadcast_module` (no pickle:
  ``torch.distributed``'s object collectives unpickle, these do not);
* :func:`convert_sync_batchnorm` / :func:`revert_sync_batchnorm`: BatchNorm statistics over
  the global batch (``torch.nn.SyncBatchNorm`` on CUDA; :class:`CpuSyncBatchNorm` on CPU, where
  PyTorch's own refuses to run);
* :func:`gather_with_grad`: the hook a contrastive SAR pretraining task (DI3CL, not built
  yet) needs to see every rank's embeddings as negatives.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every helper is a no-op and nothing is
initialised, so single-process runs behave exactly as before.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import torch

from .cores import available_cores

ENV_TIMEOUT = "SGCAD_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class RankInfo:
    """Where this process stands in the run (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def env_rank_info() -> RankInfo:
    """The rank layout torchrun (or any launcher using its variables) announced in the environment."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world if world > 0 else 1)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE (set by torchrun)")
    return RankInfo(rank, world, local_rank, max(1, local_world))


def launched() -> bool:
    """True inside a multi-process launch (``WORLD_SIZE`` > 1)."""
    return env_rank_info().distributed


def initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_info() -> RankInfo:
    """This process's rank; from the process group when one is initialised, else the environment."""
    if initialized():
        env = env_rank_info()
        return RankInfo(
            torch.distributed.get_rank(), torch.distributed.get_world_size(), env.local_rank, env.local_world_size
        )
    return env_rank_info()


def is_main() -> bool:
    return rank_info().is_main


_BN_GROUP: List[Any] = []


def init_process_group(device_type: str = "cpu", timeout_s: Optional[float] = None) -> RankInfo:
    """Join the process group torchrun describes (idempotent); a single process joins nothing.

    Args:
        device_type: ``"cuda"`` uses NCCL, anything else gloo.
        timeout_s: how long a collective may wait for the slowest rank (default
            ``$SGCAD_DIST_TIMEOUT_S`` or 1800 s).

    Returns:
        this process's :class:`RankInfo`.
    """
    info = env_rank_info()
    if initialized() or not info.distributed:
        return rank_info()
    if not torch.distributed.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install a standard build")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise ValueError(f"WORLD_SIZE={info.world_size} but {name} is not set; start the run with torchrun")
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank % max(1, torch.cuda.device_count()))
    timeout = float(os.environ.get(ENV_TIMEOUT, "") or (timeout_s or DEFAULT_TIMEOUT_S))
    torch.distributed.init_process_group(backend, timeout=_dt.timedelta(seconds=timeout))
    if backend == "gloo":  # BatchNorm syncs run on their own group, never between DDP's buckets
        _BN_GROUP[:] = [torch.distributed.new_group(backend="gloo")]
    atexit.register(destroy_process_group)
    return rank_info()


def destroy_process_group() -> None:
    if initialized():
        _BN_GROUP.clear()
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


@contextlib.contextmanager
def main_first(device_type: str = "cpu") -> Iterator[RankInfo]:
    """Rank 0 runs the body first (e.g. prepares a run folder); the others run it afterwards
    (e.g. reading what rank 0 wrote). Joins the process group when launched; a no-op otherwise.
    If rank 0's body fails, the others are not released: torchrun stops them."""
    info = init_process_group(device_type)
    if info.distributed and not info.is_main:
        barrier()
    yield info
    if info.distributed and info.is_main:
        barrier()


def device_for_rank(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes this rank's GPU (``cuda:LOCAL_RANK``); others unchanged."""
    if device.type != "cuda" or device.index is not None:
        return device
    count = max(1, torch.cuda.device_count())
    local = env_rank_info().local_rank
    if local >= count:
        raise ValueError(
            f"LOCAL_RANK {local} but this node has {count} GPU(s); start at most {count} processes per node "
            "(torchrun --nproc_per_node)"
        )
    return torch.device("cuda", local)


def threads_per_rank(requested: int = 0) -> int:
    """CPU threads for one rank: ``requested``, else this node's cores shared by its ranks."""
    if requested > 0:
        return requested
    return max(1, available_cores() // env_rank_info().local_world_size)


def _comm_device() -> torch.device:
    if initialized() and torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Any) -> torch.Tensor:
    """Sum of ``values`` (anything ``torch.as_tensor`` takes) over all ranks, as float64 on the CPU."""
    t = torch.as_tensor(values, dtype=torch.float64).clone()
    if not (initialized() and torch.distributed.get_world_size() > 1):
        return t
    t = t.to(_comm_device())
    torch.distributed.all_reduce(t)
    return t.cpu()


def broadcast_json(obj: Any = None, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank, sent as JSON bytes (never pickled)."""
    if not (initialized() and torch.distributed.get_world_size() > 1):
        return obj
    device = _comm_device()
    if torch.distributed.get_rank() == src:
        data = torch.tensor(list(json.dumps(obj).encode("utf-8")), dtype=torch.uint8)
        size = torch.tensor([data.numel()], dtype=torch.int64)
    else:
        data, size = None, torch.zeros(1, dtype=torch.int64)
    size = size.to(device)
    torch.distributed.broadcast(size, src)
    if data is None:
        data = torch.empty(int(size.item()), dtype=torch.uint8)
    data = data.to(device)
    torch.distributed.broadcast(data, src)
    return json.loads(bytes(data.cpu().tolist()).decode("utf-8"))


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Overwrite every parameter and buffer with rank ``src``'s values (in place)."""
    if not (initialized() and torch.distributed.get_world_size() > 1):
        return
    for tensor in module.state_dict().values():
        torch.distributed.broadcast(tensor, src)


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` concatenated along dim 0, gradients flowing back to each rank.

    The hook for contrastive SAR pretraining (DI3CL, not implemented yet): its loss needs the
    embeddings of the *global* batch as negatives. Single process: ``tensor`` itself.
    """
    if not (initialized() and torch.distributed.get_world_size() > 1):
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


# ---------------------------------------------------------------------------- samplers
class GlobalBatchSampler:
    """This rank's part of each global batch, in the order a single process would draw them.

    A single process with batch ``per_rank * world`` and a ``torch.Generator`` draws
    ``torch.randperm(n, generator)`` and cuts it into consecutive batches; here every rank draws
    the same permutation from the same generator state and takes its contiguous slice of each
    global batch. The last global batch, when shorter, is split as evenly as possible (part
    sizes differ by at most one, see :meth:`loss_scale`); a remainder smaller than the world
    size is dropped, since a rank without a sample cannot take part in the gradient average.

    Args:
        n: dataset length.
        per_rank: batch size of one rank.
        rank, world: this rank and the world size.
        shuffle: draw a permutation (else ``0..n-1``).
        generator: the generator the permutation is drawn from (seeded per epoch by the loop).
    """

    def __init__(
        self, n: int, per_rank: int, rank: int, world: int, shuffle: bool = True,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        if per_rank < 1 or world < 1 or not 0 <= rank < world:
            raise ValueError(f"bad sampler layout: batch {per_rank}, rank {rank} of {world}")
        self.n, self.per_rank, self.rank, self.world = n, per_rank, rank, world
        self.shuffle, self.generator = shuffle, generator
        g = per_rank * world
        sizes = [g] * (n // g)
        if n % g >= world:
            sizes.append(n % g)
        self.global_sizes = sizes
        if not sizes:
            raise ValueError(
                f"{n} training patches cannot feed {world} processes (at least one patch per process and batch)"
            )

    def __len__(self) -> int:
        return len(self.global_sizes)

    def part(self, b: int) -> Tuple[int, int]:
        """(start, stop) of this rank's slice within global batch ``b``."""
        m = self.global_sizes[b]
        q, r = divmod(m, self.world)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (1 if self.rank < r else 0)

    def share(self, b: int) -> float:
        """This rank's fraction of the samples of global batch ``b``."""
        start, stop = self.part(b)
        return (stop - start) / self.global_sizes[b]

    def loss_scale(self, b: int) -> float:
        """Factor on this rank's mean loss so that DDP's gradient average equals the global-batch
        mean: ``share * world`` (exactly 1.0 for full batches)."""
        start, stop = self.part(b)
        m = self.global_sizes[b]
        return 1.0 if (stop - start) * self.world == m else (stop - start) * self.world / m

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=self.generator).tolist()
        else:
            order = list(range(self.n))
        first = 0
        for b, m in enumerate(self.global_sizes):
            start, stop = self.part(b)
            yield order[first + start : first + stop]
            first += m


class StridedBatchSampler:
    """Consecutive batches of ``batch`` samples (as a plain DataLoader cuts them), dealt to ranks
    round-robin: rank ``r`` evaluates batches ``r, r + world, ...``. Sums over batches (confusion
    matrices, loss sums, batch counts) reduced over ranks equal a single process's."""

    def __init__(self, n: int, batch: int, rank: int, world: int) -> None:
        self.n, self.batch, self.rank, self.world = n, batch, rank, world

    def _mine(self) -> Sequence[int]:
        return range(self.rank, -(-self.n // self.batch), self.world)

    def __len__(self) -> int:
        return len(self._mine())

    def __iter__(self) -> Iterator[List[int]]:
        for b in self._mine():
            yield list(range(b * self.batch, min((b + 1) * self.batch, self.n)))


# ---------------------------------------------------------------------------- BatchNorm
def _bn_group():
    return _BN_GROUP[0] if _BN_GROUP else None


class _SyncBatchNormFn(torch.autograd.Function):
    """Batch normalisation with the statistics of the global batch (all ranks' samples)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps, momentum, group):  # noqa: D401
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        channels = x.shape[1]
        count = x.numel() // channels
        xd = x.double()
        mean = xd.mean(dims)
        m2 = ((xd - mean.view(shape)) ** 2).sum(dims)
        local = torch.cat([torch.tensor([float(count)], dtype=torch.float64), mean, m2])
        world = torch.distributed.get_world_size(group)
        parts = [torch.empty_like(local) for _ in range(world)]
        torch.distributed.all_gather(parts, local, group=group)
        stats = torch.stack(parts)  # (world, 1 + 2C): parallel-variance combination (Chan et al.)
        counts, means, m2s = stats[:, :1], stats[:, 1 : 1 + channels], stats[:, 1 + channels :]
        total = counts.sum()
        g_mean = (counts * means).sum(0) / total
        g_m2 = (m2s + counts * (means - g_mean) ** 2).sum(0)
        var = g_m2 / total
        invstd = 1.0 / torch.sqrt(var + eps)
        if running_mean is not None:
            unbiased = g_m2 / max(float(total) - 1.0, 1.0)
            running_mean.mul_(1 - momentum).add_(momentum * g_mean.to(running_mean.dtype))
            running_var.mul_(1 - momentum).add_(momentum * unbiased.to(running_var.dtype))
        xhat = ((xd - g_mean.view(shape)) * invstd.view(shape)).to(x.dtype)
        ctx.save_for_backward(xhat, weight, invstd.to(x.dtype))
        ctx.total, ctx.group = float(total), group
        y = xhat
        if weight is not None:
            y = y * weight.view(shape)
        if bias is not None:
            y = y + bias.view(shape)
        return y

    @staticmethod
    def backward(ctx, grad):
        xhat, weight, invstd = ctx.saved_tensors
        dims = [0] + list(range(2, grad.dim()))
        shape = [1, -1] + [1] * (grad.dim() - 2)
        channels = grad.shape[1]
        sum_dy = grad.sum(dims)
        sum_dy_xhat = (grad * xhat).sum(dims)
        both = torch.cat([sum_dy, sum_dy_xhat]).double()
        torch.distributed.all_reduce(both, group=ctx.group)
        mean_dy = (both[:channels] / ctx.total).to(grad.dtype)
        mean_dy_xhat = (both[channels:] / ctx.total).to(grad.dtype)
        scale = invstd if weight is None else invstd * weight
        grad_x = (grad - mean_dy.view(shape) - xhat * mean_dy_xhat.view(shape)) * scale.view(shape)
        grad_w = sum_dy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = sum_dy if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


class CpuSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics span every rank's samples, on any device gloo serves.

    PyTorch's ``SyncBatchNorm`` refuses CPU tensors. Same parameters, buffers and state-dict
    keys as ``BatchNorm*d``; in eval mode (or without a process group) it *is* a BatchNorm.
    The statistics are combined in float64 from each rank's count, mean and centred sum of
    squares; the backward pass all-reduces the two per-channel sums the input gradient needs,
    exactly as ``SyncBatchNorm`` does on GPUs.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        group = _bn_group()
        if not (self.training and self.track_running_stats and group is not None):
            return super().forward(input)
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return _SyncBatchNormFn.apply(
            input, self.weight, self.bias, self.running_mean, self.running_var, self.eps, momentum, group
        )


def _replace(module: torch.nn.Module, make) -> torch.nn.Module:
    new = make(module)
    if new is not None:
        return new
    for name, child in list(module.named_children()):
        module.add_module(name, _replace(child, make))
    return module


def _copy_bn(old: torch.nn.Module, cls) -> torch.nn.Module:
    new = cls(old.num_features, old.eps, old.momentum, old.affine, old.track_running_stats)
    if old.affine:
        new.weight, new.bias = old.weight, old.bias  # the same Parameter objects
    if old.track_running_stats:
        new.running_mean, new.running_var = old.running_mean, old.running_var
        new.num_batches_tracked = old.num_batches_tracked
    new.train(old.training)
    new._sgcad_original = type(old)
    return new


def convert_sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """BatchNorm layers that use global-batch statistics (in place for children; returns the model).

    CUDA: ``torch.nn.SyncBatchNorm``; CPU: :class:`CpuSyncBatchNorm`. Parameters and buffers
    are shared, not copied, and the state-dict keys do not change.
    """
    if not (initialized() and torch.distributed.get_world_size() > 1):
        return model
    cls = torch.nn.SyncBatchNorm if device.type == "cuda" else CpuSyncBatchNorm

    def make(m):
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
            m, (torch.nn.SyncBatchNorm, CpuSyncBatchNorm)
        ):
            return _copy_bn(m, cls)
        return None

    return _replace(model, make)


def revert_sync_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`convert_sync_batchnorm` (plain BatchNorm layers again, same tensors)."""

    def make(m):
        original = getattr(m, "_sgcad_original", None)
        return _copy_bn(m, original) if original is not None else None

    model = _replace(model, make)
    for m in model.modules():
        if hasattr(m, "_sgcad_original") and not isinstance(m, (torch.nn.SyncBatchNorm, CpuSyncBatchNorm)):
            del m._sgcad_original
    return model
