"""Throughput and latency of the `/act` server with the tiny model, over loopback (a table).

    python bench/serve.py                        # 1 and 8 concurrent clients, batching on (max_batch 8) and off
    python bench/serve.py --requests 64 --image-size 224 --threads 2

A real uvicorn server on a free 127.0.0.1 port, the tiny VLA (random weights: speed does not depend on them) behind
``Policy``, and ``ActClient``s in threads, each sending ``--requests`` / clients requests with json-numpy
images. Reported per row: requests/s, p50/p99 end-to-end latency, and the mean batch the server formed (from
``/health``). "batching off" runs the same server with ``max_batch=1``: the difference at 8 clients is what
micro-batching buys. Request counts are bounded; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx
import numpy as np
import torch
from table import machine  # bench/table.py (bench/ is on sys.path when a bench script runs)

from openvla.config import ServeConfig
from openvla.hf.processing import PrismaticProcessor
from openvla.model.configs import get_model_config
from openvla.model.image_processing import PrismaticImageProcessor
from openvla.model.text_tokenizer import load_text_tokenizer
from openvla.model.vla import build_vla
from openvla.policy import Policy
from openvla.serve.client import ActClient
from openvla.serve.server import BackgroundServer

INSTRUCTIONS = [
    "pick up the black bowl and place it on the plate",
    "open the top drawer",
    "put the cream cheese in the bowl",
]


def tiny_predictor() -> Policy:
    torch.manual_seed(0)
    config = get_model_config("tiny")
    config.norm_stats = {
        "libero_embedded": {
            "action": {"q01": [-1.0] * 6 + [0.0], "q99": [1.0] * 6 + [1.0], "mask": [True] * 6 + [False]}
        }
    }
    model = build_vla(config).eval()
    processor = PrismaticProcessor(PrismaticImageProcessor.from_vla_config(config), load_text_tokenizer("mistral-v1"))
    return Policy(model, processor)


def run_clients(url: str, clients: int, requests: int, image_size: int) -> tuple[list[float], float, int]:
    """``requests`` in total split over ``clients`` threads → per-request latencies (ms), wall time (s), errors."""
    per_client = max(1, requests // clients)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8) for _ in range(8)]
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def loop(cid: int) -> None:
        with ActClient(url) as client:
            client.health()  # open the connection before the clock starts
            barrier.wait()
            for i in range(per_client):
                start = time.perf_counter()
                try:
                    client.act(images[(cid + i) % len(images)], INSTRUCTIONS[i % len(INSTRUCTIONS)])
                except Exception:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    latencies.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=loop, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - start, errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=48, help="requests per row (split across clients)")
    parser.add_argument("--image-size", type=int, default=128, help="square uint8 image sent per request")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    torch.set_num_threads(args.threads)

    predictor = tiny_predictor()
    rows = []
    for label, max_batch in (("batching on", 8), ("batching off", 1)):
        config = ServeConfig(max_batch=max_batch, batch_wait_ms=args.batch_wait_ms)
        with BackgroundServer(predictor, config) as server:
            run_clients(server.url, 1, 4, args.image_size)  # warm-up (first calls allocate)
            for clients in (1, 8):
                if max_batch == 1 and clients == 1:
                    continue  # identical to batching on with one client
                before = httpx.get(f"{server.url}/health").json()
                latencies, wall, errors = run_clients(server.url, clients, args.requests, args.image_size)
                after = httpx.get(f"{server.url}/health").json()
                batches = after["batches"] - before["batches"]
                mean_batch = (after["requests"] - before["requests"]) / batches if batches else 0.0
                rows.append(
                    (
                        label,
                        clients,
                        len(latencies),
                        len(latencies) / wall,
                        statistics.median(latencies),
                        float(np.percentile(latencies, 99)),
                        mean_batch,
                        errors,
                    )
                )

    print(f"\n/act server, tiny model, {args.image_size}px images, torch threads {args.threads}, loopback")
    print(f"{'mode':<13} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'batch':>6} {'errors':>6}")  # fmt: skip
    for label, clients, n, rps, p50, p99, mean_batch, errors in rows:
        print(f"{label:<13} {clients:>7} {n:>8} {rps:>8.1f} {p50:>8.1f} {p99:>8.1f} {mean_batch:>6.2f} {errors:>6}")


if __name__ == "__main__":
    main()
