"""predict_action latency of a named VLA config on CPU: median of N calls at batch 1 and batch 8 (a table).

    python bench/inference.py                 # tiny, 2 threads, 50 calls per batch size
    python bench/inference.py --config small --threads 4 --calls 20

Randomly initialised weights (speed does not depend on them); the prompt is OpenVLA's, tokenized with the
Mistral v1 tokenizer; images go through the real ``PrismaticImageProcessor``. Timing includes preprocessing of the
prompt ids on the model side ("▁" append, left alignment), the vision backbone, the prefill and 7 cached decode
steps, action decoding and unnormalization; not the image preprocessing (reported separately).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--batch-sizes", default="1,8")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = get_model_config(args.config)
    config.norm_stats = {"bench": {"action": {"q01": [-1.0] * 7, "q99": [1.0] * 7, "mask": [True] * 6 + [False]}}}
    model = build_vla(config).eval()
    tokenizer = load_text_tokenizer("mistral-v1")
    processor = PrismaticImageProcessor.from_vla_config(config)
    rng = np.random.default_rng(0)

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
            f"| {args.config} | {bsz} | {args.threads} | {med:.1f} | {p90:.1f} | {med / bsz:.1f} | {cpu:.1f} | {prep_ms:.1f} |"
        )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
