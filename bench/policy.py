"""``Policy`` latency on CPU, from a raw camera frame to the action, the whole inference path included (table).

    python bench/policy.py                      # tiny config, 2 threads, 60 calls per row
    python bench/policy.py --threads 1 --calls 30 --frame 256

What a robot (or eval-libero, or ``/act``) pays per query: the model's observation transform (training's lanczos
resize to the model size, the centre crop for a model trained with crop augmentation), the processor (per-backbone
resize + normalize), the prompt, the model and the unnormalization. Rows: OpenVLA's layout (token head, one step,
7 cached decode steps) and the embedded default's OFT options (L1 head, K = 8 chunk, proprio), ``Policy.act`` at
batch 1 (``execution="chunk"``: every call runs the model) and ``Policy.predict`` at batch 8 (ms per call and per
frame). A breakdown row times the transform and processor alone. Randomly initialised weights (speed does not
depend on them). Medians over ``--calls`` after 3 warm-up calls; the machine and its load are the reader's to name.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from table import machine  # bench/table.py (bench/ is on sys.path when a bench script runs)

from openvla.hf.processing import PrismaticProcessor
from openvla.model import build_vla, get_model_config, set_action_options
from openvla.model.image_processing import PrismaticImageProcessor
from openvla.model.text_tokenizer import load_text_tokenizer
from openvla.policy import Policy

INSTRUCTION = "put the black bowl on the plate"
UPSTREAM_MS = (30.0, 36.0)  # OpenVLA's predict_action, 4.9 M parameters, 224 px, 2 threads, this kind of machine


def statistics_json(action_dim: int = 7, proprio_dim: int = 8) -> dict:
    action = {"q01": [-1.0] * action_dim, "q99": [1.0] * action_dim, "mask": [True] * (action_dim - 1) + [False]}
    proprio = {"q01": [-1.0] * proprio_dim, "q99": [1.0] * proprio_dim, "min": [-1.0] * proprio_dim,
               "max": [1.0] * proprio_dim}  # fmt: skip
    return {"bench": {"action": action, "proprio": proprio, "num_transitions": 1, "num_trajectories": 1}}


def make_policy(config_name: str, *, head: str, chunk: int, proprio: bool) -> Policy:
    torch.manual_seed(0)
    config = get_model_config(config_name)
    stats = statistics_json()
    set_action_options(config, action_head=head, parallel_decoding=head == "l1", chunk=chunk, use_proprio=proprio,
                       statistics=stats)  # fmt: skip
    config.norm_stats = stats
    config.image_augmentation = True  # the centre crop is part of the path, as for the embedded default
    model = build_vla(config, "sdpa").eval()
    processor = PrismaticProcessor(PrismaticImageProcessor.from_vla_config(config), load_text_tokenizer("mistral-v1"))
    return Policy(model, processor, unnorm_key="bench")


def median_ms(fn: Callable[[], object], calls: int, warmup: int = 3) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), float(np.percentile(times, 90))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--frame", type=int, default=128, help="raw camera frame size (LIBERO renders 128 px here)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.frame, args.frame, 3), dtype=np.uint8) for _ in range(8)]
    state = rng.uniform(-1, 1, 8)
    print(f"Policy latency, config {args.config}, {args.frame} px raw frames, {args.threads} torch threads, "
          f"medians of {args.calls} calls")  # fmt: skip
    print()
    print("| model | call | batch | median ms | p90 ms | ms / frame | vs OpenVLA's 30–36 ms |")
    print("|---|---|---|---|---|---|---|")
    variants = [
        ("OpenVLA layout (tokens, K=1)", "tokens", 1, False),
        ("embedded default (L1, K=8, proprio)", "l1", 8, True),
    ]
    for name, head, chunk, proprio in variants:
        policy = make_policy(args.config, head=head, chunk=chunk, proprio=proprio)
        obs = {"image": frames[0], "instruction": INSTRUCTION, "proprio": state}
        rows = [
            ("act", 1, lambda p=policy, o=obs: p.act(o)),
            ("predict", 8, lambda p=policy: p.predict(frames, [INSTRUCTION] * 8, [state] * 8)),
        ]
        for call, batch, fn in rows:
            med, p90 = median_ms(fn, args.calls)
            ratio = f"{med / UPSTREAM_MS[0]:.2f}–{med / UPSTREAM_MS[1]:.2f}×" if batch == 1 else ""
            print(f"| {name} | `{call}` | {batch} | {med:.1f} | {p90:.1f} | {med / batch:.1f} | {ratio} |")
    policy = make_policy(args.config, head="l1", chunk=8, proprio=True)
    med, p90 = median_ms(lambda: policy.transform(frames[0]), args.calls)
    print(f"| (either) | transform alone | 1 | {med:.2f} | {p90:.2f} | {med:.2f} | |")
    frame = policy.transform(frames[0])
    med, p90 = median_ms(lambda: policy.image_processor.apply_transform(frame), args.calls)
    print(f"| (either) | processor alone | 1 | {med:.2f} | {p90:.2f} | {med:.2f} | |")


if __name__ == "__main__":
    main()
