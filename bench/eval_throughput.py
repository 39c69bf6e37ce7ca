"""LIBERO evaluation throughput of an exported model: episodes/min and where the time goes, per setting.

Runs `evaluate_libero` (the `eval-libero` stage's code) once per setting on the same episodes and prints one row per
setting: success, episodes/min, seconds per episode (median), the share of episode time spent in the policy (the
rest is simulation and rendering), query latency, camera renders per episode and the share skipped, and the mean
batch the shared policy saw (`batch_queries`).

    python bench/eval_throughput.py                                   # the default model and eval_libero params
    python bench/eval_throughput.py --episodes 50 --first-init-state 0 --tasks 1
    python bench/eval_throughput.py --settings open_loop ensemble open_loop+batch

A setting is an execution (`open_loop` | `ensemble`), with `+batch` for `batch_queries: true`. Run it on a quiet
machine: the workers use every core.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
from pathlib import Path

from table import machine, print_rows  # bench/table.py (bench/ is on sys.path when a bench script runs)

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_setting(setting: str, args: argparse.Namespace) -> dict[str, object]:
    from openvla.config import load_params
    from openvla.eval.libero import evaluate_libero, policy_spec

    execution, _, batch = setting.partition("+")
    cfg = load_params(args.params).eval_libero
    overrides: dict[str, object] = {"execution": execution, "batch_queries": batch == "batch", "videos": 0}
    if args.episodes:
        overrides["episodes_per_task"] = args.episodes
    if args.first_init_state is not None:
        overrides["first_init_state"] = args.first_init_state
    if args.tasks:
        overrides["task_ids"] = args.tasks
    if args.workers:
        overrides["workers"] = args.workers
    cfg = dataclasses.replace(cfg, **overrides)
    spec = policy_spec(cfg, model_dir=str(args.model_dir))  # as the stage builds it
    with tempfile.TemporaryDirectory() as tmp:
        m = evaluate_libero(cfg, spec, plots_dir=Path(tmp) / "plots")
    return {
        "setting": setting,
        "episodes": m["episodes"],
        "success": f"{m['successes']}/{m['episodes']}",
        "ep/min": f"{m['episodes_per_minute']:.1f}",
        "s/episode": f"{m['seconds_per_episode']:.1f}",
        "policy share": f"{100 * m.get('policy_time_fraction', 0.0):.0f}%",
        "query ms": f"{m.get('query_latency_ms_median', 0.0):.1f}",
        "renders/ep": f"{m.get('camera_renders_per_episode', 0.0):.0f}",
        "skipped": f"{100 * m.get('camera_renders_skipped_fraction', 0.0):.0f}%",
        "mean batch": f"{m['policy_batches']['mean_batch']:.2f}" if "policy_batches" in m else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "openvla-embedded-hf")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--settings", nargs="+", default=["open_loop", "open_loop+batch", "ensemble"])
    parser.add_argument("--episodes", type=int, default=0, help="episodes per task (default: eval_libero's)")
    parser.add_argument("--first-init-state", type=int, default=None)
    parser.add_argument("--tasks", type=int, nargs="*", default=None, help="task ids (default: eval_libero's)")
    parser.add_argument("--workers", type=int, default=0, help="simulator processes (default: eval_libero's)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    logging.basicConfig(level=logging.WARNING)
    print_rows([run_setting(s, args) for s in args.settings])


if __name__ == "__main__":
    main()
