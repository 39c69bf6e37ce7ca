"""Where an exported model first closes its gripper, against the scripted expert's grasp point, per episode.

Runs the `eval-libero` stage's episodes (same workers, same seeds, so the same successes as the stage) for one
LIBERO-Goal pick-and-place task, replays each from its actions (`openvla.eval.grasp`) and prints one row per
episode — success, the step of the first close, the gripper's offset from the grasp point (cm, world axes; the
fingers close along y) and how high the object got — then the mean offset of the successes and of the failures, and
the tracking slope per axis: 0 = the grasp follows the object, −1 = the policy closes at one place whatever the
object's position.

    python bench/grasp_offsets.py                   # task 2 (wine bottle → cabinet top), eval_libero's 20 states
    python bench/grasp_offsets.py --task 1 --model-dir models/openvla-embedded-hf
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np
from table import machine, print_rows  # bench/table.py (bench/ is on sys.path when a bench script runs)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cm(v: np.ndarray) -> str:
    return " ".join(f"{100 * x:+.1f}" for x in v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models" / "openvla-embedded-hf")
    parser.add_argument("--params", type=Path, default=REPO_ROOT / "params.yaml")
    parser.add_argument("--task", type=int, default=2, help="LIBERO-Goal task id (2 = wine bottle → cabinet top)")
    parser.add_argument("--episodes", type=int, default=0, help="episodes (default: eval_libero's per task)")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    logging.basicConfig(level=logging.WARNING)

    from openvla.config import load_params
    from openvla.eval.grasp import first_grasp, tracking_slopes
    from openvla.eval.libero import EpisodeRunner, EpisodeSpec, policy_spec
    from openvla.sim.libero_env import get_task, init_states, make_env
    from openvla.tf_import import import_tensorflow

    cfg = load_params(args.params).eval_libero
    cfg = dataclasses.replace(cfg, suites=["libero_goal"], task_ids=[args.task], videos=0, batch_queries=False,
                              episodes_per_task=args.episodes or cfg.episodes_per_task)  # fmt: skip
    spec = policy_spec(cfg, model_dir=str(args.model_dir))  # as the stage builds it
    states = range(cfg.first_init_state, cfg.first_init_state + cfg.episodes_per_task)
    with EpisodeRunner(cfg, spec) as runner:
        results = sorted(runner.run([EpisodeSpec("libero_goal", args.task, i) for i in states]),
                         key=lambda r: r.init_index)  # fmt: skip

    import_tensorflow()  # before any GL context (openvla/tf_import.py)
    task = get_task("libero_goal", args.task)
    # The replay renders nothing, so one camera will do: the physics is what it reproduces.
    env = make_env(task, cfg.resolution, ("agentview",), seed=cfg.seed, cheap_rendering=cfg.cheap_rendering)
    fixed = init_states(task)
    records, rows = [], []
    for res in results:
        rec = first_grasp(env, fixed[res.init_index], res.actions, layout_seed=res.seed)
        records.append((res.success, rec))
        rows.append({"state": res.init_index, "success": "yes" if res.success else "no", "first close": rec.step,
                     "offset x y z (cm)": _cm(rec.offset), "object lifted (cm)": f"{100 * rec.lift:.1f}"})  # fmt: skip
    env.close()
    print(f"{task.language} — {sum(s for s, _ in records)}/{len(records)} successes")
    print_rows(rows)
    summary = []
    for label, keep in (("successes", True), ("failures", False)):
        offsets = [r.offset for s, r in records if s == keep and r.step >= 0]
        if offsets:
            summary.append({"episodes": label, "closes": len(offsets),
                            "mean offset x y z (cm)": _cm(np.mean(offsets, 0)),
                            "mean |offset| x y (cm)": _cm(np.abs(offsets).mean(0)[:2])})  # fmt: skip
    print_rows(summary)
    slope = tracking_slopes([r for _, r in records])
    print(f"tracking slope (0 = follows the object, −1 = one place whatever the object): x {slope[0]:+.2f}, "
          f"y {slope[1]:+.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
