"""Data pipeline benchmark: loader throughput with and without augmentation, and memory over a long stream.

Generates a dataset (npz episodes at 128 px → ``convert`` → RLDS), computes its statistics, then measures frames/s
of ``make_dataset`` in training mode (median of several timed windows after a warm-up) and the process RSS after
1k and 10k frames (it must stay flat: the shuffle buffer holds encoded frames and tf.data's buffers are bounded).

    python bench/data_pipeline.py                  # defaults: 40 episodes × 100 steps, 224 px model input
    python bench/data_pipeline.py --episodes 10 --rss-frames 2000
    MALLOC_ARENA_MAX=2 python bench/data_pipeline.py   # flat RSS (glibc arenas otherwise creep ~1 MiB / 1k frames)
"""

from __future__ import annotations

import argparse
import logging
import statistics as pystats
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from table import machine  # bench/table.py (bench/ is on sys.path when a bench script runs)

from openvla.logging_utils import setup_logging


def make_raw(directory: Path, episodes: int, steps: int, size: int, seed: int = 0) -> None:
    """Smooth synthetic camera frames (JPEG-compressible like real ones) with random EEF actions."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for e in range(episodes):
        phase = rng.uniform(0, 2 * np.pi, size=3)
        t = np.arange(steps, dtype=np.float32)[:, None, None]
        channels = [127 + 100 * np.sin(6 * xx + 3 * yy + phase[c] + 0.05 * t) for c in range(3)]
        image = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
        action = rng.normal(0, 0.3, size=(steps, 7)).astype(np.float32)
        action[:, 6] = (np.arange(steps) < steps // 2).astype(np.float32)
        np.savez(
            directory / f"episode_{e:04d}.npz",
            image=image,
            wrist_image=image[:, ::-1],
            state=rng.normal(size=(steps, 8)).astype(np.float32),
            action=action,
            language_instruction=np.array(f"task number {e % 5}"),
        )


def throughput(make, frames: int, repeats: int) -> float:
    """Median frames/s over ``repeats`` windows of ``frames`` frames, after a warm-up of one window."""
    iterator = iter(make())
    for _ in range(frames):
        next(iterator)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(frames):
            next(iterator)
        rates.append(frames / (time.perf_counter() - start))
    return pystats.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--raw-size", type=int, default=128, help="camera resolution of the generated episodes")
    parser.add_argument("--image-size", type=int, default=224, help="model input size (resize in the loader)")
    parser.add_argument("--frames", type=int, default=300, help="frames per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows (the median is reported)")
    parser.add_argument("--rss-frames", type=int, default=10_000)
    parser.add_argument("--shuffle-buffer", type=int, default=2000)
    parser.add_argument("--num-parallel-calls", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    setup_logging("WARNING")

    from openvla.config import ConvertConfig
    from openvla.data import DatasetConfig, compute_dataset_statistics, make_dataset, register_dataset
    from openvla.data.convert import convert_dataset
    from openvla.data.standardize import identity_transform

    register_dataset(
        "bench_robot",
        DatasetConfig({"primary": "image", "wrist": "wrist_image"}, ("state",), identity_transform),
        overwrite=True,
    )
    process = psutil.Process()
    with tempfile.TemporaryDirectory(prefix="openvla-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        make_raw(root / "raw", args.episodes, args.steps, args.raw_size)
        cfg = ConvertConfig(input_format="npz", dataset_name="bench_robot", rotate_180=False, drop_noops=False)
        convert_dataset(root / "raw", root / "rlds", cfg)
        convert_s = time.perf_counter() - start
        stats = {"bench_robot": compute_dataset_statistics(root / "rlds", "bench_robot")}
        total = stats["bench_robot"]["num_transitions"]

        def loader(augment: bool):
            def make():
                return make_dataset(
                    root / "rlds",
                    "bench_robot",
                    statistics=stats,
                    train=True,
                    image_size=args.image_size,
                    shuffle_buffer=args.shuffle_buffer,
                    image_augmentation=augment,
                    seed=0,
                    num_parallel_calls=args.num_parallel_calls,
                ).as_numpy_iterator()

            return make

        rows = []
        for augment in (False, True):
            rate = throughput(loader(augment), args.frames, args.repeats)
            rows.append((f"train, augmentation {'on' if augment else 'off'}", rate))

        rss = []
        iterator = loader(True)()
        checkpoints = sorted({1000, args.rss_frames // 2, args.rss_frames})
        for i in range(1, args.rss_frames + 1):
            next(iterator)
            if i in checkpoints:
                rss.append((i, process.memory_info().rss / 2**20))

    print(
        f"\ndataset: {args.episodes} episodes, {total} frames at {args.raw_size} px (convert {convert_s:.1f} s); "
        f"loader → {args.image_size} px, shuffle buffer {args.shuffle_buffer}, "
        f"{args.num_parallel_calls} parallel calls, {psutil.cpu_count()} CPUs"
    )
    print(f"\n| loader mode | frames/s (median of {args.repeats} × {args.frames}) |\n|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.0f} |")
    print("\n| frames read (augmentation on) | process RSS (MiB) |\n|---|---|")
    for i, mib in rss:
        print(f"| {i} | {mib:.0f} |")
    logging.getLogger(__name__).info("done")


if __name__ == "__main__":
    main()
