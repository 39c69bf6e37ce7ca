"""Closed-loop LIBERO evaluation, episodes run exactly as OpenVLA runs them (DESIGN §11).

One episode of task ``t`` from fixed initial state ``i``: reset, set LIBERO's ``i``-th initial state, 10 no-op
steps ``[0,0,0,0,0,0,−1]`` (objects settle), then up to the suite's max steps (spatial/object/goal/10/90:
220/280/300/520/400) of: agentview frame → the camera's own steps (``LIBERO_CAMERA``: rotate 180°, JPEG round trip)
→ ``policy.act`` (the model's transform — training resize, the 90% centre crop for a model trained with crop
augmentation — then the model, and chunk execution, open loop or temporal ensembling) → gripper mapping ([0,1] →
[−1,1], binarize, flip) → ``env.step``. Success = the env's ``done`` (its goal predicates hold).

The policy is an in-process ``openvla.policy.Policy``, or an ``/act`` server reached over HTTP (``--server``), which
receives the same observations and gives the same actions; ``eval/policy.py`` builds either.

Episodes are spread over ``workers`` spawned processes, each building its environment and its policy once.
Results: per-task and total success rates with 95% Wilson intervals, episode lengths, MP4 videos of the first
``videos`` successful and ``videos`` failed episodes — to ``metrics/libero.json``, ``plots/libero/`` and MLflow.
"""

from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from openvla.config import EvalLiberoConfig
from openvla.eval.metrics import success_summary
from openvla.eval.policy import PolicySpec, build_policy
from openvla.io import atomic_write_json
from openvla.policy.transform import CameraSteps, rotate_180
from openvla.sim.suites import NOOP_ACTION, NUM_NOOP_STEPS

log = logging.getLogger(__name__)

# LIBERO renders upside down, and the RLDS training images were stored as JPEG: OpenVLA's LIBERO protocol undoes the
# first and repeats the second before the model's own transform.
LIBERO_CAMERA = CameraSteps(rotate_180=True, jpeg_roundtrip=True)


def libero_gripper(actions: np.ndarray) -> np.ndarray:
    """Policy actions [..., 7] (gripper in [0, 1], 1 = open) → LIBERO actions (gripper −1 open / +1 close)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    g = 2.0 * out[..., -1] - 1.0  # [0, 1] → [−1, 1]
    out[..., -1] = -np.sign(g)  # binarize, then LIBERO's sign (+1 = close)
    return out


@dataclass(frozen=True)
class EpisodeSpec:
    task_id: int
    init_index: int  # index into the task's fixed initial states
    video: bool  # keep the frames for an MP4


@dataclass
class EpisodeResult:
    task_id: int
    init_index: int
    success: bool
    steps: int  # policy steps taken (no-op steps not counted)
    seconds: float
    frames: list[np.ndarray] | None = None  # upright agentview frames when a video was asked for
    query_seconds: list[float] = field(default_factory=list)  # wall time of each policy query (model latency)
    actions: np.ndarray | None = None  # (steps, 7) actions executed, in the policy's convention


@dataclass
class EpisodeRollout:
    """What ``run_episode`` returns."""

    success: bool
    steps: int
    frames: list[np.ndarray]
    query_seconds: list[float]


def run_episode(
    env: Any,
    init_state: np.ndarray,
    policy: Any,
    instruction: str,
    *,
    max_steps: int,
    session: str = "episode",
    layout_seed: int | None = None,
    record: bool = False,
    actions: list[np.ndarray] | None = None,
) -> EpisodeRollout:
    """One episode from ``init_state``: success, policy steps, frames and the time of every model query.

    ``policy`` answers ``act(observation, session=...)`` (``Policy``, ``RemotePolicy``, ``RandomPolicy``); its
    ``queries`` counter tells which steps ran the model. ``actions``, when given, receives every action executed.
    ``layout_seed`` fixes where the reset places LIBERO's joint-less fixtures (``reset_to_state``).
    """
    from openvla.sim.libero_env import camera_image, proprio, reset_to_state

    reset_to_state(env, init_state, layout_seed)
    policy.reset(session)
    obs = None
    for _ in range(NUM_NOOP_STEPS):
        obs, _, _, _ = env.step(NOOP_ACTION.copy())
    frames: list[np.ndarray] = []
    query_seconds: list[float] = []
    for step in range(max_steps):
        raw = camera_image(obs, "agentview")
        if record:
            frames.append(rotate_180(raw))
        observation = {"image": LIBERO_CAMERA(raw), "instruction": instruction, "proprio": proprio(obs)}
        queries, start = policy.queries, time.perf_counter()
        action = policy.act(observation, session=session)
        if policy.queries > queries:
            query_seconds.append(time.perf_counter() - start)
        if actions is not None:
            actions.append(np.asarray(action).copy())
        obs, _, done, _ = env.step(libero_gripper(action))
        if done:
            if record:
                frames.append(rotate_180(camera_image(obs, "agentview")))
            return EpisodeRollout(True, step + 1, frames, query_seconds)
    return EpisodeRollout(False, max_steps, frames, query_seconds)


# --- worker side ------------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _worker_state(cfg: EvalLiberoConfig, spec: PolicySpec) -> dict[str, Any]:
    """This process's policy and environments, built on first use (an error surfaces in the caller, whereas a
    failing pool initializer would make the pool respawn workers forever)."""
    if _WORKER.get("key") != (cfg, spec):
        from openvla.tf_import import import_tensorflow

        # Before any GL context: triton (loaded by torch's compiler stack) segfaults when Mesa's LLVM is already
        # loaded, and the image pipeline needs TensorFlow (whose import loads torch._dynamo first).
        import_tensorflow()
        _close_envs()
        _WORKER.update(key=(cfg, spec), policy=build_policy(spec), envs={})
    return _WORKER


def _close_envs() -> None:
    for env, _, _ in _WORKER.get("envs", {}).values():
        env.close()
    _WORKER["envs"] = {}


def _run_spec(job: tuple[EvalLiberoConfig, PolicySpec, EpisodeSpec]) -> EpisodeResult:
    from openvla.sim.libero_env import get_task, init_states, make_env

    cfg, spec, ep = job
    state = _worker_state(cfg, spec)
    policy, envs = state["policy"], state["envs"]
    if ep.task_id not in envs:
        _close_envs()  # one live environment per worker
        envs = _WORKER["envs"]
        task = get_task(cfg.suite, ep.task_id)
        env = make_env(task, cfg.resolution, ("agentview",), seed=cfg.seed, cheap_rendering=cfg.cheap_rendering)
        envs[ep.task_id] = (env, task, init_states(task))
    env, task, states = envs[ep.task_id]
    if ep.init_index >= len(states):
        raise ValueError(
            f"{cfg.suite} task {ep.task_id} has {len(states)} fixed initial states; "
            f"eval_libero.first_init_state + episodes_per_task must stay ≤ {len(states)}"
        )
    episode_seed = int(np.random.SeedSequence([cfg.seed, ep.task_id, ep.init_index]).generate_state(1)[0])
    if hasattr(policy, "seed"):  # the random baseline: one reproducible stream per episode
        policy.seed(episode_seed)
    start = time.perf_counter()
    actions: list[np.ndarray] = []
    rollout = run_episode(
        env,
        states[ep.init_index],
        policy,
        task.language,
        max_steps=cfg.max_steps or task.max_steps,
        session=f"{cfg.suite}/task{ep.task_id}/init{ep.init_index}",
        layout_seed=episode_seed,
        record=ep.video,
        actions=actions,
    )
    seconds = time.perf_counter() - start
    return EpisodeResult(ep.task_id, ep.init_index, rollout.success, rollout.steps, seconds, rollout.frames or None,
                         rollout.query_seconds, np.stack(actions) if actions else None)  # fmt: skip


def run_episodes(cfg: EvalLiberoConfig, spec: PolicySpec, episodes: list[EpisodeSpec]) -> Iterator[EpisodeResult]:
    """Every episode's result, in completion order, on ``cfg.workers`` processes (or in this one for ≤ 1)."""
    jobs = [(cfg, spec, ep) for ep in episodes]
    if cfg.workers <= 1:
        try:
            yield from map(_run_spec, jobs)
        finally:
            _close_envs()
            _WORKER.clear()
        return
    ctx = mp.get_context("spawn")  # never fork a process holding GL contexts, torch or TF threads
    with ctx.Pool(cfg.workers) as pool:
        # chunks of a task's episodes keep each worker on one environment as long as possible
        chunksize = max(1, min(cfg.episodes_per_task // cfg.workers, 8))
        yield from pool.imap_unordered(_run_spec, jobs, chunksize=chunksize)


class VideoSelection:
    """The first ``per_outcome`` successful and the first ``per_outcome`` failed rollouts, in (task, state) order.

    Episodes finish in any order across workers, so the choice is made by episode index, not arrival, and only the
    frames of the currently chosen ones are held (at most 2 × ``per_outcome`` episodes in memory). Keeping both
    outcomes means a run with a few successes still shows one, rather than only its first (failed) episodes.
    """

    def __init__(self, per_outcome: int) -> None:
        self.per_outcome = per_outcome
        self._kept: dict[str, dict[tuple[int, int], list[np.ndarray]]] = {"success": {}, "fail": {}}

    def offer(self, res: EpisodeResult) -> None:
        if not res.frames or self.per_outcome <= 0:
            return
        kept = self._kept["success" if res.success else "fail"]
        kept[(res.task_id, res.init_index)] = res.frames
        if len(kept) > self.per_outcome:
            del kept[max(kept)]

    def chosen(self) -> list[tuple[tuple[int, int, str], list[np.ndarray]]]:
        """((task, state, outcome), frames) of the kept rollouts, successes first, each in (task, state) order."""
        return [((t, i, outcome), kept[(t, i)]) for outcome, kept in self._kept.items() for t, i in sorted(kept)]


# --- the stage ----------------------------------------------------------------------------------------------------
def evaluate_libero(
    cfg: EvalLiberoConfig,
    policy_spec: PolicySpec,
    metrics_path: str | Path | None = None,
    plots_dir: str | Path = "plots/libero",
    run: Any | None = None,
) -> dict[str, Any]:
    """Run every (task, initial state) episode of ``cfg``; write plots/videos; return the summary metrics."""
    from openvla.eval.video import write_mp4
    from openvla.sim.libero_env import get_task

    plots_dir = Path(plots_dir)
    if policy_spec.kind == "model" and not (Path(policy_spec.model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{policy_spec.model_dir}: no config.json; export a model first or use --policy random")
    if policy_spec.kind == "server":
        _check_server(policy_spec, cfg)
    episodes = [
        EpisodeSpec(t, i, video=cfg.videos > 0)
        for t in cfg.task_ids
        for i in range(cfg.first_init_state, cfg.first_init_state + cfg.episodes_per_task)
    ]
    tasks = {t: get_task(cfg.suite, t) for t in cfg.task_ids}
    start = time.perf_counter()
    results: list[EpisodeResult] = []
    kept = VideoSelection(cfg.videos)
    bar = tqdm(total=len(episodes), desc=f"eval {cfg.suite}", unit="ep", dynamic_ncols=True)
    with bar:
        for res in run_episodes(cfg, policy_spec, episodes):
            kept.offer(res)
            res.frames = None
            results.append(res)
            done = sum(r.success for r in results)
            bar.update(1)
            bar.set_postfix(success=f"{done}/{len(results)}")
            if run is not None:
                run.log_metrics({"episode_success": float(res.success), "episode_steps": res.steps}, step=len(results))
    videos = [
        str(write_mp4(plots_dir / "videos" / f"{cfg.suite}_task{t}_init{i}_{outcome}.mp4", frames))
        for (t, i, outcome), frames in kept.chosen()
    ]
    minutes = (time.perf_counter() - start) / 60
    results.sort(key=lambda r: (r.task_id, r.init_index))

    per_task: dict[str, Any] = {}
    for t in cfg.task_ids:
        rs = [r for r in results if r.task_id == t]
        per_task[str(t)] = {
            "language": tasks[t].language,
            **success_summary(sum(r.success for r in rs), len(rs)),
            "steps_mean": float(np.mean([r.steps for r in rs])) if rs else 0.0,
            "success_steps_mean": float(np.mean([r.steps for r in rs if r.success]))
            if any(r.success for r in rs)
            else None,
        }
    total = success_summary(sum(r.success for r in results), len(results))
    summary: dict[str, Any] = {
        "suite": cfg.suite,
        "policy": policy_spec.kind,
        **({"server": policy_spec.server_url} if policy_spec.kind == "server" else {}),
        **total,
        "steps_mean": float(np.mean([r.steps for r in results])) if results else 0.0,
        "minutes": minutes,
        "seconds_per_episode": float(np.median([r.seconds for r in results])) if results else 0.0,
        **policy_speed(results),
        "init_states": [cfg.first_init_state, cfg.first_init_state + cfg.episodes_per_task],
        "execution": cfg.execution,
        "center_crop": cfg.center_crop,
        "tasks": per_task,
        "videos": videos,
    }
    _write_plots(plots_dir, results, per_task)
    if metrics_path is not None:
        atomic_write_json(metrics_path, summary)
    if run is not None:
        run.log_metrics({k: v for k, v in total.items()})
        run.log_metrics({f"task{t}.success_rate": v["success_rate"] for t, v in per_task.items()})
        run.log_artifacts(plots_dir, "libero")
    log.info(
        "LIBERO %s: %d/%d successes (%.1f%%, 95%% CI %.1f–%.1f%%) in %.1f min",
        cfg.suite,
        total["successes"],
        total["episodes"],
        100 * total["success_rate"],
        100 * total["ci95_low"],
        100 * total["ci95_high"],
        minutes,
    )
    return summary


def _check_server(spec: PolicySpec, cfg: EvalLiberoConfig) -> None:
    """Reach the server before spawning workers, and say when it will not see what an in-process run would."""
    from openvla.serve.client import ActClient

    with ActClient(spec.server_url, timeout=30.0) as client:
        try:
            health = client.health()
        except Exception as err:
            raise ConnectionError(
                f"eval-libero --server {spec.server_url}: no /act server answers there ({err})"
            ) from err
    crop = (health.get("transform") or {}).get("center_crop")
    if crop is not None and bool(crop) != bool(cfg.center_crop):
        log.warning(
            "the server's model %s the centre crop but eval_libero.center_crop is %s: the server decides (its model "
            "records how it was trained), so this run is not comparable with an in-process one",
            "applies" if crop else "does not apply",
            cfg.center_crop,
        )
    log.info("evaluating the /act server at %s: %s", spec.server_url, health)


def policy_speed(results: list[EpisodeResult]) -> dict[str, float]:
    """Model latency per query (median, p90, ms), queries per episode, and actions/s = executed actions per second
    of policy time (the simulator and rendering excluded): with chunks executed open loop one query covers K
    actions; temporal ensembling queries every step."""
    times = [t for r in results for t in r.query_seconds]
    if not times:
        return {}
    steps = sum(r.steps for r in results)
    return {
        "query_latency_ms_median": 1000 * float(np.median(times)),
        "query_latency_ms_p90": 1000 * float(np.percentile(times, 90)),
        "queries_per_episode": len(times) / len(results),
        "actions_per_second": steps / float(np.sum(times)),
    }


def _write_plots(plots_dir: Path, results: list[EpisodeResult], per_task: dict[str, Any]) -> None:
    """``episodes.csv`` (one row per episode) and ``success.csv`` (per task, with the Wilson interval)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "episodes.csv", "w", newline="") as f:
        fields = ["task_id", "init_index", "success", "steps", "seconds", "queries"]
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in results:
            row = {k: v for k, v in asdict(r).items() if k in fields}
            row["success"] = int(row["success"])
            row["queries"] = len(r.query_seconds)
            w.writerow(row)
    with open(plots_dir / "success.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "success_rate", "ci95_low", "ci95_high", "episodes"])
        for t, v in per_task.items():
            w.writerow([t, v["success_rate"], v["ci95_low"], v["ci95_high"], v["episodes"]])
