"""The ``demos`` stage's library: scripted-expert demonstrations in LIBERO written as LIBERO-style HDF5.

For each task, attempt ``k = 0, 1, 2, …`` samples a fresh initial state from the task's own placement sampler
(``env.reset()`` under ``np.random.seed(SeedSequence([seed, task_id, k]))``), waits the 10 no-op steps evaluation
waits too (not recorded), then records the expert until ``env.check_success()`` or the suite's step budget, and
after a success up to ``post_success_steps`` more while the expert finishes its plan (opens and retreats). The
demos are the first ``num_demos`` successful attempts in attempt order; failed attempts are dropped and counted.
Every attempt depends only on ``(seed, task_id, k)``, so the output is the same for any number of ``workers``.

Initial states: evaluation uses LIBERO's fixed initial states; the demos never do. Freshly sampled states come
from the same distribution (LIBERO generated its fixed states with this sampler) but are different states; the
summary reports the smallest distance between a demo's initial object placement and any fixed initial state.

Known limitation: with ``hard_reset=False``, LIBERO's sampler places objects that sit *on a fixture* (the bowl
"on the stove", libero_spatial task 7) far from that fixture, off the table. For such tasks set
``demos.init_states: fixed``: attempt ``k`` then starts from LIBERO's fixed initial state ``k mod fixed_init_limit``
(states ``[0, fixed_init_limit)``, disjoint from evaluation's when ``fixed_init_limit ≤
eval_libero.first_init_state``; attempts past the limit reuse states, only their noise differs). Task 0, the
embedded default, places everything on table regions and uses fresh samples.

Noise: attempt ``k`` is noisy when ``floor((k + 1)·f) > floor(k·f)`` (f = ``noise_fraction``, so exactly that
fraction of attempts); a noisy attempt executes ``clip(a[:3] + N(0, noise_std), −1, 1)`` and stores ``a``, the
expert's clean action — the policy learns to come back to the expert's path.

Misses: attempt ``k`` is a miss when the same rule holds for ``miss_fraction`` (counted from the other end, ``k →
max_attempts − 1 − k``, so that misses and noise seldom fall on one attempt), for objects with ``miss_offsets`` (the
wine bottle, the cream cheese box). Its first grasp closes the fingers beside the object, finds nothing held, opens
while rising and grasps again. Only the steps from the empty grasp on are recorded (the expert's ``label`` is None
before): the demo shows the recovery from a grasp that caught nothing, the policies' most common failure on the wine
bottle, and never the miss. A miss whose fingers caught the object after all is dropped like a failed attempt.

Displaced starts: attempt ``k`` is displaced when the rule holds for ``displaced_fraction``. After the no-op steps
the open hand first moves, unrecorded, to a random point a uniform fraction of the way to the expert's approach
point (12 cm above the grasp point) and up to ``displaced_range`` beside it in x and y; the demo starts there, with
the expert's plan from that state. A policy's first action chunk leaves the hand short of and beside where the
expert's would (bench/grasp_offsets.py); clean demos never pass there, so the policy never saw how to go on from it.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from openvla.config import DemosConfig
from openvla.io import atomic_directory
from openvla.sim.expert import GAIN
from openvla.sim.hdf5 import DemoEpisode, write_libero_hdf5
from openvla.sim.suites import CAMERAS, NUM_NOOP_STEPS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttemptSpec:
    """Everything one attempt depends on (picklable, sent to worker processes)."""

    suite: str
    task_id: int
    attempt: int
    seed: int
    resolution: int
    noise_fraction: float
    noise_std: float
    max_steps: int  # step budget after the no-op steps
    miss: bool = False  # the first grasp misses on purpose (see the module docstring)
    cheap_rendering: bool = True
    init_states: str = "sampled"  # "sampled" (fresh placement samples) or "fixed" (LIBERO's fixed states)
    fixed_init_limit: int = 30  # "fixed": attempt k uses fixed state k mod this
    post_success_steps: int = 0  # steps recorded after success while the expert is not done
    displaced: bool = False  # the demo starts with the hand displaced (see the module docstring)
    displaced_range: float = 0.04  # metres beside the approach path, in x and y
    approach_gain: float = GAIN  # the expert's gain before the grasp (expert.APPROACH_PHASES)
    release_at_rest: bool = False  # the expert opens once its hand comes to rest while lowering (expert.SETTLED_STEPS)


@dataclass
class AttemptResult:
    task_id: int
    attempt: int
    success: bool
    steps: int
    noisy: bool
    seconds: float
    miss: bool  # a deliberate miss (whose fingers, when it failed, may have caught the object after all)
    episode: DemoEpisode | None  # None for failed attempts (images are not shipped back)
    init_state: np.ndarray | None = None  # flattened MuJoCo state the attempt started from (before the no-op steps)


def attempt_seed(seed: int, task_id: int, attempt: int) -> int:
    """32-bit seed of one attempt's initial-state sampling (independent of worker assignment)."""
    return int(np.random.SeedSequence([seed, task_id, attempt]).generate_state(1)[0])


def is_selected(attempt: int, fraction: float) -> bool:
    """Exactly ``fraction`` of consecutive attempts are selected, spread evenly (the noisy ones; counted from the
    last attempt, the deliberate misses)."""
    return math.floor((attempt + 1) * fraction) > math.floor(attempt * fraction)


# --- one attempt (runs in a worker process) -------------------------------------------------------------------
_ENV_CACHE: dict[tuple, Any] = {}


def _env_for(spec: AttemptSpec) -> tuple[Any, Any]:
    """The (env, expert) of this process for the spec's task; the previous task's env is closed."""
    from openvla.sim.expert import PickPlaceExpert
    from openvla.sim.libero_env import get_task, make_env

    key = (spec.suite, spec.task_id, spec.resolution, spec.cheap_rendering)
    if key not in _ENV_CACHE:
        for old_env, _ in _ENV_CACHE.values():
            old_env.close()
        _ENV_CACHE.clear()
        env = make_env(
            get_task(spec.suite, spec.task_id), spec.resolution, CAMERAS, cheap_rendering=spec.cheap_rendering
        )
        _ENV_CACHE[key] = (env, PickPlaceExpert(env))
    return _ENV_CACHE[key]


def run_attempt(spec: AttemptSpec) -> AttemptResult:
    """Sample an initial state, settle, run the expert with the attempt's noise; record every step."""
    from openvla.sim.libero_env import apply_cheap_rendering, ee_state, reset, settle

    start = time.perf_counter()
    env, expert = _env_for(spec)
    expert.approach_gain = spec.approach_gain  # the cached expert serves every attempt of this task
    expert.release_at_rest = spec.release_at_rest
    if spec.init_states == "fixed":
        from openvla.sim.libero_env import get_task, init_states, reset_to_state

        fixed = init_states(get_task(spec.suite, spec.task_id))
        # the seed fixes where the reset puts joint-less fixtures (LIBERO-Goal's stove, rack, …): per attempt, not
        # per worker history
        reset_to_state(
            env,
            fixed[spec.attempt % min(spec.fixed_init_limit, len(fixed))],
            layout_seed=attempt_seed(spec.seed, spec.task_id, spec.attempt),
        )
    else:
        np.random.seed(attempt_seed(spec.seed, spec.task_id, spec.attempt))  # LIBERO's placement sampler uses it
        reset(env)
    init_state = env.get_sim_state().copy()
    if spec.cheap_rendering:
        apply_cheap_rendering(env)
    obs = settle(env, NUM_NOOP_STEPS)
    noisy = is_selected(spec.attempt, spec.noise_fraction)
    rng = np.random.default_rng([spec.seed, spec.task_id, spec.attempt, 1])
    miss = None
    offsets = expert.family.miss_offsets
    if spec.miss and offsets:
        pick = np.random.default_rng([spec.seed, spec.task_id, spec.attempt, 2]).integers(len(offsets))
        miss = np.asarray(offsets[int(pick)])
    expert.reset(miss=miss)
    if spec.displaced:
        displaced_obs = displace_hand(env, expert, np.random.default_rng([spec.seed, spec.task_id, spec.attempt, 3]),
                                      spec.displaced_range)  # fmt: skip
        obs = displaced_obs if displaced_obs is not None else obs
        expert.reset(miss=miss)  # a fresh plan from where the hand now is

    keys = ("actions", "states", "robot_states", *(f"obs/{k}" for k in _OBS_FROM_ENV))
    rec: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    success = False
    after = 0  # steps taken since success
    for step in range(spec.max_steps + spec.post_success_steps):
        state = env.get_sim_state().copy()
        action = expert.act()
        if expert.label is not None:  # None: a step of a deliberate miss, not a demonstration
            rec["states"].append(state)
            rec["robot_states"].append(
                np.concatenate([obs["robot0_gripper_qpos"], obs["robot0_eef_pos"], obs["robot0_eef_quat"]])
            )
            rec["obs/agentview_rgb"].append(obs["agentview_image"].copy())
            rec["obs/eye_in_hand_rgb"].append(obs["robot0_eye_in_hand_image"].copy())
            rec["obs/ee_states"].append(ee_state(obs))
            rec["obs/gripper_states"].append(np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64))
            rec["obs/joint_states"].append(np.asarray(obs["robot0_joint_pos"], dtype=np.float64))
            rec["actions"].append(expert.label)
        executed = action.copy()
        if noisy and spec.noise_std > 0:
            executed[:3] = np.clip(action[:3] + rng.normal(0.0, spec.noise_std, 3), -1.0, 1.0)
        obs, _, _, _ = env.step(executed)
        if success:
            after += 1
            if after >= spec.post_success_steps or expert.done:
                break
        elif env.check_success():
            success = not expert.miss_caught
            if spec.post_success_steps == 0 or expert.done or not success:
                break
        elif step + 1 >= spec.max_steps:  # the budget ends without success
            break
    steps = len(rec["actions"])
    episode = None
    if success:
        episode = DemoEpisode(
            actions=np.stack(rec["actions"]),
            states=np.stack(rec["states"]),
            robot_states=np.stack(rec["robot_states"]),
            obs={k: np.stack(rec[f"obs/{k}"]) for k in _OBS_FROM_ENV},
            success=True,
            attrs={
                "attempt": spec.attempt,
                "noisy": noisy,
                "miss": miss is not None,
                "init_state": init_state,
                **({"displaced": True} if spec.displaced else {}),  # only then: the default's files stay as they were
            },
        )
    seconds = time.perf_counter() - start
    miss_made = miss is not None
    return AttemptResult(spec.task_id, spec.attempt, success, steps, noisy, seconds, miss_made, episode, init_state)


DISPLACE_MAX_STEPS = 30  # steps the unrecorded move to a displaced start may take
DISPLACE_TOLERANCE = 0.01  # metres


def displace_hand(env: Any, expert: Any, rng: np.random.Generator, reach: float) -> dict[str, Any] | None:
    """Move the open hand, unrecorded, to a random ``displaced_point``: a uniform fraction of the way to the approach
    point and up to ``reach`` beside it in x and y. Returns the last observation (None if the hand did not move)."""
    from openvla.sim.expert import OPEN, displaced_point, move_action

    goal = displaced_point(expert.eef(), expert.approach_point(), rng.uniform(0.0, 1.0), rng.uniform(-reach, reach, 2))
    obs = None
    for _ in range(DISPLACE_MAX_STEPS):
        error = goal - expert.eef()
        if np.linalg.norm(error) < DISPLACE_TOLERANCE:
            break
        obs, _, _, _ = env.step(move_action(error, OPEN))
    return obs


_OBS_FROM_ENV = ("agentview_rgb", "eye_in_hand_rgb", "ee_states", "gripper_states", "joint_states")


# --- the stage: many attempts over worker processes -------------------------------------------------------------
def _results(specs: list[AttemptSpec], workers: int) -> Iterator[AttemptResult]:
    """Attempt results in attempt order, computed in ``workers`` spawned processes (inline when workers ≤ 1)."""
    if workers <= 1:
        for spec in specs:
            yield run_attempt(spec)
        return
    ctx = mp.get_context("spawn")  # fork would copy a process that may hold a GL context or TF threads
    pool = ctx.Pool(workers, maxtasksperchild=None)
    try:
        yield from pool.imap(run_attempt, specs, chunksize=1)
    finally:
        pool.terminate()  # attempts still running past the last needed demo are discarded
        pool.join()


def collect_task(cfg: DemosConfig, task_id: int, max_steps: int) -> tuple[list[DemoEpisode], dict[str, Any]]:
    """The first ``cfg.num_demos`` successful attempts of one task, and counts about all attempts consumed."""
    specs = [
        AttemptSpec(
            suite=cfg.suite,
            task_id=task_id,
            attempt=k,
            seed=cfg.seed,
            resolution=cfg.resolution,
            noise_fraction=cfg.noise_fraction,
            noise_std=cfg.noise_std,
            max_steps=max_steps,
            miss=is_selected(cfg.max_attempts - 1 - k, cfg.miss_fraction),
            cheap_rendering=cfg.cheap_rendering,
            init_states=cfg.init_states,
            fixed_init_limit=cfg.fixed_init_limit,
            post_success_steps=cfg.post_success_steps,
            displaced=is_selected(k, cfg.displaced_fraction),
            displaced_range=cfg.displaced_range,
            approach_gain=cfg.approach_gain,
            release_at_rest=cfg.release_at_rest,
        )
        for k in range(cfg.max_attempts)
    ]
    episodes: list[DemoEpisode] = []
    attempts = failed = noisy_failed = miss_failed = 0
    steps: list[int] = []
    bar = tqdm(total=cfg.num_demos, desc=f"demos {cfg.suite}/{task_id}", unit="demo", dynamic_ncols=True)
    with bar:
        for result in _results(specs, cfg.workers):
            attempts += 1
            if result.success:
                assert result.episode is not None
                episodes.append(result.episode)
                steps.append(result.steps)
                bar.update(1)
            else:
                failed += 1
                noisy_failed += int(result.noisy)
                miss_failed += int(result.miss)
                log.info(
                    "task %d attempt %d failed after %d steps (noisy=%s, miss=%s)",
                    task_id,
                    result.attempt,
                    result.steps,
                    result.noisy,
                    result.miss,
                )
            bar.set_postfix(attempts=attempts, failed=failed)
            if len(episodes) >= cfg.num_demos:
                break
    stats = {
        "demos": len(episodes),
        "attempts": attempts,
        "failed": failed,
        "failed_noisy": noisy_failed,
        "failed_miss": miss_failed,
        "expert_success_rate": len(episodes) / max(attempts, 1),
        "noisy_demos": int(sum(bool(ep.attrs["noisy"]) for ep in episodes)),
        "miss_demos": int(sum(bool(ep.attrs["miss"]) for ep in episodes)),
        "displaced_demos": int(sum(bool(ep.attrs.get("displaced", False)) for ep in episodes)),
        "steps_median": float(np.median(steps)) if steps else 0.0,
        "steps_max": int(max(steps)) if steps else 0,
    }
    return episodes, stats


def min_distance_to_states(episodes: list[DemoEpisode], fixed_states: np.ndarray) -> float:
    """Smallest L2 distance between a demo's initial state and any of ``fixed_states`` (both flattened states)."""
    if not episodes or fixed_states.size == 0:
        return float("nan")
    init = np.stack([np.asarray(ep.attrs["init_state"]) for ep in episodes])
    n = min(init.shape[1], fixed_states.shape[1])
    diff = init[:, None, 1:n] - fixed_states[None, :, 1:n]  # index 0 is the sim time
    return float(np.sqrt((diff**2).sum(-1)).min())


def make_demos(cfg: DemosConfig, out_dir: str | Path, run: Any | None = None) -> dict[str, Any]:
    """Write ``out_dir/<task_name>_demo.hdf5`` for every task of ``cfg`` atomically; return the summary metrics."""
    from openvla.sim.libero_env import env_kwargs, get_task, init_states, recorded_bddl_file

    start = time.perf_counter()
    summary: dict[str, Any] = {"suite": cfg.suite, "tasks": {}}
    total_demos = total_attempts = 0
    with atomic_directory(out_dir) as tmp:
        for task_id in cfg.task_ids:
            task = get_task(cfg.suite, task_id)
            max_steps = cfg.max_steps or task.max_steps
            t0 = time.perf_counter()
            episodes, stats = collect_task(cfg, task_id, max_steps)
            if len(episodes) < cfg.num_demos:
                raise RuntimeError(
                    f"demos: task {cfg.suite}/{task_id} gave {len(episodes)} successful demos in "
                    f"{cfg.max_attempts} attempts, fewer than demos.num_demos={cfg.num_demos}; raise demos.max_attempts"
                )
            if cfg.init_states == "sampled":
                stats["min_init_distance_to_fixed_states"] = min_distance_to_states(episodes, init_states(task))
            else:
                stats["fixed_init_states_used"] = [0, cfg.fixed_init_limit]
            stats["seconds"] = time.perf_counter() - t0
            for ep in episodes:
                ep.attrs.pop("init_state", None)  # used for the check above; the first `states` row is recorded
            problem_info = {
                "problem_name": "libero_tabletop_manipulation",
                "language_instruction": task.language,
                "task_name": task.name,
                "suite": cfg.suite,
                "task_id": task_id,
            }
            env_args = {
                "type": 1,  # robomimic's robosuite env type, as in LIBERO's files
                "env_name": task.name,
                "env_kwargs": {
                    **env_kwargs(task, cfg.resolution, CAMERAS),
                    "bddl_file_name": recorded_bddl_file(task),  # relative: the same bytes in any checkout
                    "controller": "OSC_POSE",
                },
                "cheap_rendering": cfg.cheap_rendering,
                "noise_fraction": cfg.noise_fraction,
                "noise_std": cfg.noise_std,
                "miss_fraction": cfg.miss_fraction,
                "post_success_steps": cfg.post_success_steps,
                "seed": cfg.seed,
                "init_states": cfg.init_states,
            }
            if cfg.displaced_fraction > 0:  # recorded only when used: files made without it stay byte-identical
                env_args.update(displaced_fraction=cfg.displaced_fraction, displaced_range=cfg.displaced_range)
            if cfg.approach_gain != GAIN:  # likewise
                env_args.update(approach_gain=cfg.approach_gain)
            if cfg.release_at_rest:  # likewise
                env_args.update(release_at_rest=True)
            write_libero_hdf5(tmp / f"{task.name}_demo.hdf5", episodes, problem_info=problem_info, env_args=env_args)
            summary["tasks"][str(task_id)] = stats
            total_demos += stats["demos"]
            total_attempts += stats["attempts"]
            if run is not None:
                run.log_metrics({f"task{task_id}.{k}": v for k, v in stats.items()})
            log.info("task %d: %s", task_id, stats)
    minutes = (time.perf_counter() - start) / 60
    summary.update(
        demos=total_demos,
        attempts=total_attempts,
        expert_success_rate=total_demos / max(total_attempts, 1),
        minutes=minutes,
        demos_per_minute=total_demos / max(minutes, 1e-9),
        workers=cfg.workers,
    )
    return summary
