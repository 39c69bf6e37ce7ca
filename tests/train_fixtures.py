"""A toy model and a toy training run for the training tests (FSDP/DDP equivalence, resume, kill-safety).

Run as a script (under ``torchrun`` for several processes) it trains the toy model and writes its final
parameters to ``<run_dir>/final_rank<r>.pt``::

    torchrun --standalone --nproc-per-node 2 tests/train_fixtures.py --run-dir /tmp/x --steps 4
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from openvla.logging_utils import setup_logging
from openvla.train import checkpoint as ckpt
from openvla.train.distributed import DistInfo, init_distributed, shutdown_distributed
from openvla.train.loop import Checkpointer, LoopConfig, fingerprint, fit
from openvla.train.metrics import MetricsRecorder
from openvla.train.optim import build_optimizer, build_scheduler
from openvla.train.strategy import wrap_model

IN_DIM, HIDDEN, OUT_DIM = 8, 32, 4


class ToyBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.fc(self.norm(x)))


class ToyVision(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(IN_DIM, HIDDEN)
        self.blocks = nn.ModuleList([ToyBlock(HIDDEN) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return x


class ToyNet(nn.Module):
    """Layout of the VLA in miniature: a ``vision_backbone`` with ``blocks``, more blocks, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.vision_backbone = ToyVision()
        self.blocks = nn.ModuleList([ToyBlock(HIDDEN) for _ in range(2)])
        self.head = nn.Linear(HIDDEN, OUT_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.vision_backbone(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def make_toy(seed: int = 0) -> ToyNet:
    torch.manual_seed(seed)
    return ToyNet()


def toy_batches(
    seed: int, start_step: int, global_batch: int, accum: int, rank: int, world: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's slice of a deterministic global batch per (step, micro-step): resume repeats nothing."""
    if global_batch % world:
        raise ValueError(f"global batch {global_batch} not divisible by {world} processes")
    per = global_batch // world
    step = start_step
    while True:
        for micro in range(accum):
            g = torch.Generator().manual_seed(seed * 1_000_003 + step * 101 + micro)
            x = torch.randn(global_batch, IN_DIM, generator=g)
            y = torch.sin(x[:, :OUT_DIM] * 2.0) + 0.1 * torch.randn(global_batch, OUT_DIM, generator=g)
            yield x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
        step += 1


def toy_objective(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    x, y = batch
    return nn.functional.mse_loss(model(x), y), {}


def write_toy_model(directory: Path, state: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))


def run_toy(
    run_dir: Path,
    steps: int,
    info: DistInfo,
    strategy: str = "fsdp",
    global_batch: int = 8,
    accum: int = 1,
    save_every: int = 2,
    keep_last: int = 2,
    lr: float = 1e-2,
    kill_after_step: int = 0,
    kill_during_save_step: int = 0,
) -> tuple[nn.Module, dict]:
    """One toy training run (resuming from ``run_dir/latest`` when it exists); returns (model, summary)."""
    manager = ckpt.CheckpointManager(run_dir, keep_last=keep_last)
    checkpointer = Checkpointer(manager, info, write_toy_model, fingerprint({"lr": lr, "batch": global_batch}))
    resume_from = checkpointer.find_resume(True)
    model = make_toy()
    if resume_from is not None:
        model.load_state_dict(ckpt.load_weights(resume_from))
    model = wrap_model(model, strategy, info, wrap_classes=(ToyBlock,))  # type: ignore[arg-type]
    optimizer = build_optimizer(model, lr=lr, weight_decay=0.01)
    scheduler = build_scheduler(optimizer, "cosine", total_steps=steps, warmup_steps=2)
    start = 0
    if resume_from is not None:
        start = checkpointer.restore(resume_from, model, optimizer, scheduler)["step"]
    recorder = MetricsRecorder(None, run_dir / "history.jsonl", run_dir / "plots") if info.is_main else None
    if recorder is not None:
        recorder.resume_from(start)

    if kill_during_save_step:
        real_save = torch.save

        def dying_save(obj, f, *args, **kwargs):  # dies after the weights, before trainer_state.pt
            if isinstance(obj, dict) and obj.get("step") == kill_during_save_step:
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)

        torch.save = dying_save

    def on_step_end(step: int, metrics: dict) -> None:
        if kill_after_step and step == kill_after_step and info.is_main:
            os.kill(os.getpid(), signal.SIGKILL)

    summary = fit(
        model,
        optimizer,
        scheduler,
        toy_batches(0, start, global_batch, accum, info.rank, info.world_size),
        toy_objective,
        LoopConfig(steps=steps, grad_accumulation=accum, grad_clip=1.0, save_every=save_every),
        info,
        start_step=start,
        checkpointer=checkpointer,
        recorder=recorder,
        batch_size_of=lambda b: b[0].shape[0],
        on_step_end=on_step_end,
    )
    return model, summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--strategy", default="fsdp")
    parser.add_argument("--accum", type=int, default=1)
    parser.add_argument("--save-every", type=int, default=2)
    parser.add_argument("--kill-after-step", type=int, default=0)
    parser.add_argument("--kill-during-save-step", type=int, default=0)
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    try:
        _, summary = run_toy(
            args.run_dir,
            args.steps,
            info,
            strategy=args.strategy,
            accum=args.accum,
            save_every=args.save_every,
            kill_after_step=args.kill_after_step,
            kill_during_save_step=args.kill_during_save_step,
        )
        if info.is_main:
            torch.save(summary, args.run_dir / "summary.pt")
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main()
