"""predict_action latency of a named VLA config on CPU: OpenVLA at batch 1 and 8, and OFT action chunks (tables).

    python bench/inference.py                 # tiny, 2 threads, 50 calls per batch size, 30 per chunk variant
    python bench/inference.py --config small --threads 4 --calls 20 --chunk-calls 5

Randomly initialised weights (speed does not depend on them); the prompt is OpenVLA's, tokenized with the
Mistral v1 tokenizer; images go through the real ``PrismaticImageProcessor``. Timing includes preprocessing of the
prompt ids on the model side ("▁" append, left alignment), the vision backbone, the prefill and 7 cached decode
steps, action decoding and unnormalization; not the image preprocessing (reported separately).

The second table compares, at batch 1, one OpenVLA step (K = 1, 7 tokens) with chunks of K actions (OpenVLA-OFT):
token by token (K·D tokens with the KV cache), parallel decoding with the tokens head or the L1 head (one forward
over K·D action slots), and the L1 head with a proprio token. The variants are timed round-robin (one call of each
in turn), so load from other processes on a shared machine falls on all of them alike. "ms / K actions" is the time
to obtain K actions (K = 1: K queries); actions/s is K / median latency per query.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from table import machine  # bench/table.py (bench/ is on sys.path when a bench script runs)

from openvla.model.configs import get_model_config
from openvla.model.image_processing import PrismaticImageProcessor
from openvla.model.prompts import build_action_prompt
from openvla.model.text_tokenizer import load_text_tokenizer
from openvla.model.vla import build_vla

INSTRUCTIONS = [
    "pick up the black bowl and place it on the plate",
    "open the top drawer",
    "put the cream cheese in the bowl",
]
ACTION_DIM = 7
PROPRIO_DIM = 8


def bench_norm_stats() -> dict:
    """Statistics of a made-up dataset "bench": actions and proprio in [−1, 1], gripper unnormalized."""
    action = {"q01": [-1.0] * ACTION_DIM, "q99": [1.0] * ACTION_DIM, "mask": [True] * (ACTION_DIM - 1) + [False]}
    bounds = {"min": [-1.0] * PROPRIO_DIM, "max": [1.0] * PROPRIO_DIM}
    proprio = {"q01": [-1.0] * PROPRIO_DIM, "q99": [1.0] * PROPRIO_DIM, **bounds}
    return {"bench": {"action": action, "proprio": proprio}}


def median_ms(fn, calls: int, warmup: int = 3) -> tuple[float, float, float]:
    """Median and p90 wall time, and median process CPU time (all threads), in ms.

    CPU time is reported because wall time on a shared machine depends on the other jobs running.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(calls):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), float(np.percentile(wall, 90)), statistics.median(cpu)


@dataclass(frozen=True)
class ChunkVariant:
    """One row of the chunk table: how the model is configured."""

    name: str
    chunk: int
    head: str  # "tokens" | "l1"
    parallel: bool
    proprio: bool = False

    def lm_passes(self) -> str:
        """LM forwards per query: prefill + cached decode steps, or one parallel forward."""
        return "1 (parallel)" if self.parallel else f"1 + {self.chunk * ACTION_DIM - 1} cached"


def chunk_variants(chunk: int) -> list[ChunkVariant]:
    return [
        ChunkVariant("OpenVLA, one step", 1, "tokens", parallel=False),
        ChunkVariant(f"K={chunk} token by token", chunk, "tokens", parallel=False),
        ChunkVariant(f"K={chunk} parallel, tokens head", chunk, "tokens", parallel=True),
        ChunkVariant(f"K={chunk} parallel, L1 head", chunk, "l1", parallel=True),
        ChunkVariant(f"K={chunk} parallel, L1 head + proprio", chunk, "l1", parallel=True, proprio=True),
    ]


def round_robin_ms(fns: list[Callable[[], object]], calls: int, warmup: int = 3) -> list[tuple[float, float, float]]:
    """``median_ms`` for several functions timed in turn (call i of each, then call i + 1), one result per function."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    wall: list[list[float]] = [[] for _ in fns]
    cpu: list[list[float]] = [[] for _ in fns]
    for i in range(calls):
        order = range(len(fns)) if i % 2 == 0 else reversed(range(len(fns)))  # no variant always runs first
        for j in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[j]()
            wall[j].append((time.perf_counter() - start) * 1000)
            cpu[j].append((time.process_time() - start_cpu) * 1000)
    return [
        (statistics.median(w), float(np.percentile(w, 90)), statistics.median(c))
        for w, c in zip(wall, cpu, strict=True)
    ]


def batch_table(args: argparse.Namespace, tokenizer, rng: np.random.Generator) -> list[str]:
    """OpenVLA (K = 1, token by token) at each batch size, with the image preprocessing time."""
    torch.manual_seed(0)
    config = get_model_config(args.config)
    config.norm_stats = bench_norm_stats()
    model = build_vla(config, "sdpa").eval()
    processor = PrismaticImageProcessor.from_vla_config(config)
    rows = [
        "| config | batch | threads | predict_action median ms | p90 ms | ms / sample | CPU ms (all threads) | "
        "image preprocessing ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bsz in [int(b) for b in args.batch_sizes.split(",")]:
        prompts = [build_action_prompt(INSTRUCTIONS[i % len(INSTRUCTIONS)], config.llm_backbone_id) for i in range(bsz)]
        enc = tokenizer(prompts, padding=True, return_tensors="pt")
        images = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(bsz)]
        prep_ms, _, _ = median_ms(lambda images=images: processor(images, return_tensors="pt"), max(5, args.calls // 5))
        pixel_values = processor(images, return_tensors="pt")["pixel_values"]

        def call(enc=enc, pixel_values=pixel_values) -> np.ndarray:
            return model.predict_action(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixel_values
            )

        med, p90, cpu = median_ms(call, args.calls)
        rows.append(
            f"| {args.config} | {bsz} | {args.threads} | {med:.1f} | {p90:.1f} | {med / bsz:.1f} | {cpu:.1f} | "
            f"{prep_ms:.1f} |"
        )
    return rows


def chunk_table(args: argparse.Namespace, tokenizer, rng: np.random.Generator) -> list[str]:
    """The chunk variants at batch 1 on the same prompt and image, timed round-robin."""
    variants = chunk_variants(args.chunk)
    enc = tokenizer([build_action_prompt(INSTRUCTIONS[0], get_model_config(args.config).llm_backbone_id)],
                    return_tensors="pt")  # fmt: skip
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    state = rng.uniform(-1.0, 1.0, PROPRIO_DIM).astype(np.float32)
    calls = []
    for variant in variants:
        torch.manual_seed(0)
        config = get_model_config(args.config)
        config.action_chunk, config.action_head = variant.chunk, variant.head
        config.parallel_decoding, config.use_proprio = variant.parallel, variant.proprio
        config.action_dim, config.proprio_dim = ACTION_DIM, PROPRIO_DIM
        config.validate_action_options()
        config.norm_stats = bench_norm_stats()
        model = build_vla(config, "sdpa").eval()
        pixel_values = PrismaticImageProcessor.from_vla_config(config)([image], return_tensors="pt")["pixel_values"]

        def call(model=model, pixel_values=pixel_values, variant=variant) -> np.ndarray:
            return model.predict_action(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=pixel_values,
                unnorm_key="bench", proprio=state if variant.proprio else None,
            )  # fmt: skip

        expected = (ACTION_DIM,) if variant.chunk == 1 else (variant.chunk, ACTION_DIM)
        shape = call().shape
        if shape != expected:
            raise RuntimeError(f"{variant.name}: predict_action returned {shape}, expected {expected}")
        calls.append(call)
    results = round_robin_ms(calls, args.chunk_calls)
    per_k = args.chunk
    rows = [
        f"| config | variant | K | head | LM forwards / query | median ms / query | p90 ms | ms / {per_k} actions | "
        "actions/s | CPU ms / query (all threads) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, (med, p90, cpu) in zip(variants, results, strict=True):
        head = variant.head + (" + proprio" if variant.proprio else "")
        rows.append(
            f"| {args.config} | {variant.name} | {variant.chunk} | {head} | {variant.lm_passes()} | {med:.1f} | "
            f"{p90:.1f} | {med * per_k / variant.chunk:.1f} | {variant.chunk / med * 1000:.1f} | {cpu:.1f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50, help="timed calls per batch size (OpenVLA table)")
    parser.add_argument("--batch-sizes", default="1,8", help="comma-separated; empty: skip the OpenVLA batch table")
    parser.add_argument("--chunk", type=int, default=8, help="K of the chunk variants; 0: skip the chunk table")
    parser.add_argument("--chunk-calls", type=int, default=30, help="timed calls per chunk variant (after 3 warm-up)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)

    torch.set_num_threads(args.threads)
    tokenizer = load_text_tokenizer("mistral-v1")
    rng = np.random.default_rng(0)
    tables = []
    if args.batch_sizes:
        tables.append(batch_table(args, tokenizer, rng))
    if args.chunk > 0:
        tables.append(chunk_table(args, tokenizer, rng))
    print("\n\n".join("\n".join(rows) for rows in tables))


if __name__ == "__main__":
    main()
