"""Training-step throughput and memory of the tiny VLA on CPU: FSDP on 1 and 2 processes, DDP on 2, no wrapper.

The model is the one `pretrain` trains: ``params.yaml``'s action head, chunk, proprio token, cameras and FiLM
(``--params`` for another). Each configuration runs in fresh processes under torchrun (the same code path as the
`pretrain` stage) on a fixed synthetic batch of that shape (so the data pipeline is not measured; see
bench/data_pipeline.py), with the CPU threads split
between the processes (2 threads in total by default). Prints one table row per configuration: global samples/s,
seconds per optimizer step, peak RSS of rank 0 and of all ranks together. The ``fsdp 1`` row is FSDP itself; the
`pretrain` stage trains ``strategy: fsdp`` on one fp32 process as the plain module (the ``none`` row), which
gives the same parameters (``openvla.train.strategy.effective_strategy``).

    python bench/train_step.py                 # global batch 8, 2 warm-up + 6 timed steps, 2 threads in total
    python bench/train_step.py --batch 16 --steps 10 --threads 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from table import machine  # bench/table.py (bench/ is on sys.path when a bench script runs)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [("none", 1), ("fsdp", 1), ("fsdp", 2), ("ddp", 2)]


PROPRIO_DIM = 8  # LIBERO's proprio (eef position, axis-angle, two finger joints)


def _default_config(params_path: Path) -> tuple[Any, str]:
    """The tiny VLA as ``params.yaml`` trains it (action head, chunk, proprio, cameras, FiLM), for a 7-D dataset,
    and its text tokenizer's name."""
    from openvla.config import load_params
    from openvla.model import get_model_config, set_action_options
    from openvla.model.configs import action_options_of

    params = load_params(params_path)
    config = get_model_config(params.model.name)
    quantiles = {"q01": [-1.0] * 7, "q99": [1.0] * 7}
    proprio = {"q01": [-1.0] * PROPRIO_DIM, "q99": [1.0] * PROPRIO_DIM}
    statistics = {"bench": {"action": quantiles, "proprio": proprio}}
    set_action_options(config, **action_options_of(params), statistics=statistics)
    return config, params.model.tokenizer


def _batch(n: int, config: Any, tokenizer: str, seed: int = 0) -> tuple[dict, Any]:
    """A collated training batch of the default's tiny VLA from random frames (every camera, a K-action chunk,
    proprio, an instruction): the shapes `pretrain` trains on, without the data pipeline."""
    import numpy as np

    from openvla.actions import ActionTokenizer, save_action_tokenizer
    from openvla.model import image_size_of
    from openvla.train.vla import build_components

    size = image_size_of(config)
    with tempfile.TemporaryDirectory() as tmp:
        save_action_tokenizer(ActionTokenizer(config.base_vocab_size), tmp)
        components = build_components(config, tokenizer, tmp)
    rng = np.random.default_rng(seed)
    frames = [
        {
            "observation": {
                **{
                    f"image_{camera}": rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
                    for camera in config.camera_roles
                },
                "proprio": rng.uniform(-1, 1, (1, PROPRIO_DIM)).astype(np.float32),
            },
            "action": rng.uniform(-1, 1, (1, config.action_chunk, 7)).astype(np.float32),
            "task": {"language_instruction": b"put the bowl on top of the cabinet"},
            "dataset_name": b"bench",
        }
        for _ in range(n)
    ]
    return components.collator([components.transform(f) for f in frames]), components


def worker(args: argparse.Namespace) -> None:
    """One rank: train the tiny VLA for warm-up + timed steps and write its numbers (rank 0 writes the file)."""
    import itertools

    import torch

    from openvla.model import build_vla
    from openvla.train.distributed import all_gather_objects, init_distributed, shutdown_distributed
    from openvla.train.loop import LoopConfig, fit, peak_rss_mb
    from openvla.train.optim import build_optimizer, build_scheduler
    from openvla.train.strategy import wrap_model
    from openvla.train.vla import VLAObjective, batch_size_of, freeze_unused_parameters, wrap_classes_of

    torch.set_num_threads(args.threads_per_rank)
    info = init_distributed("cpu")
    config, tokenizer = _default_config(Path(args.params))
    batch, components = _batch(args.batch // info.world_size, config, tokenizer, seed=info.rank)
    torch.manual_seed(0)
    model = build_vla(config, attn_implementation="sdpa")
    freeze_unused_parameters(model)
    model = wrap_model(model, args.strategy, info, wrap_classes=wrap_classes_of(model))
    optimizer = build_optimizer(model, 1e-4, 0.0)
    scheduler = build_scheduler(optimizer, "constant", args.warmup + args.steps)
    objective = VLAObjective(components.action_tokenizer, info.device)
    common = {"batch_size_of": batch_size_of, "desc": f"{args.strategy}-{info.world_size}"}
    fit(model, optimizer, scheduler, itertools.repeat(batch), objective, LoopConfig(args.warmup), info, **common)
    t0 = time.perf_counter()
    summary = fit(model, optimizer, scheduler, itertools.repeat(batch), objective,
                  LoopConfig(args.warmup + args.steps), info, start_step=args.warmup, **common)  # fmt: skip
    elapsed = time.perf_counter() - t0
    rss = all_gather_objects(peak_rss_mb())
    if info.is_main:
        result = {
            "strategy": args.strategy,
            "nproc": info.world_size,
            "threads_per_rank": args.threads_per_rank,
            "samples_per_s": args.batch * args.steps / elapsed,
            "s_per_step": elapsed / args.steps,
            "final_loss": summary["final_loss"],
            "peak_rss_rank0_mb": rss[0],
            "peak_rss_all_mb": sum(rss),
        }
        Path(args.out).write_text(json.dumps(result))
    shutdown_distributed()


def run_config(strategy: str, nproc: int, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    threads = max(1, args.threads // nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(Path(__file__).resolve()), "--worker", "--strategy", strategy, "--batch", str(args.batch), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "--threads-per-rank", str(threads), "--out", out,
           "--params", str(Path(args.params).resolve())]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO_ROOT), OPENVLA_LOG_LEVEL="WARNING")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{strategy} x{nproc} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="global batch (split across processes)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in total, split across processes")
    parser.add_argument("--only", default="", help="comma list like fsdp:2,ddp:2 (default: all)")
    parser.add_argument("--params", default=str(REPO_ROOT / "params.yaml"), help="model options from this params.yaml")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--strategy", default="fsdp", help=argparse.SUPPRESS)
    parser.add_argument("--threads-per-rank", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    configs = CONFIGS
    if args.only:
        configs = [(s, int(n)) for s, n in (item.split(":") for item in args.only.split(","))]
    print(f"tiny VLA training step ({args.params}'s model options), global batch {args.batch}, {args.threads} "
          f"threads in total, {args.steps} timed steps; {machine()}")  # fmt: skip
    header = (f"{'strategy':<8} {'procs':>5} {'thr/proc':>8} {'samples/s':>10} {'s/step':>8} {'RSS rank0 MB':>13} "
              f"{'RSS all MB':>11}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for strategy, nproc in configs:
        r = run_config(strategy, nproc, args)
        print(f"{strategy:<8} {nproc:>5} {r['threads_per_rank']:>8} {r['samples_per_s']:>10.2f} "
              f"{r['s_per_step']:>8.2f} {r['peak_rss_rank0_mb']:>13.0f} {r['peak_rss_all_mb']:>11.0f}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
