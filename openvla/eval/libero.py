"""Closed-loop LIBERO evaluation, episodes run exactly as OpenVLA runs them (DESIGN §11).

One episode of task ``t`` from fixed initial state ``i``: reset, set LIBERO's ``i``-th initial state, 10 no-op
steps ``[0,0,0,0,0,0,−1]`` (objects settle), then up to the suite's max steps (spatial/object/goal/10/90:
220/280/300/520/400) of: the frames of the cameras the policy reads (agentview; plus ``robot0_eye_in_hand`` for
a model with the wrist camera) → the camera's own steps (``LIBERO_CAMERA``: rotate 180°, JPEG round trip)
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

import contextlib
import csv
import dataclasses
import functools
import logging
import multiprocessing as mp
import os
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

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
# Camera role (the data pipeline's) → LIBERO's camera; the demos record both, the converter rotates both.
LIBERO_CAMERAS = {"primary": "agentview", "wrist": "robot0_eye_in_hand"}


class CameraSwitch:
    """Skip the camera renders of the env steps whose observation nobody reads.

    Software rendering (llvmpipe) of a LIBERO scene costs about twice the physics of a 20 Hz control step per camera, at
    any resolution (the meshes dominate): 25 against 11 ms on one 2-core machine, 53 against 23 ms on a slower one. A
    policy that executes its chunks open loop reads one observation every K steps. Each camera observable's sensor is
    wrapped: while ``render`` is False it answers its last frame instead of rendering. robosuite's sampling clock, the
    physics and every rendered frame are untouched, so an episode's actions and outcome are the same with and without
    skipping — only the unread frames go stale. ``only`` limits rendering to some cameras (a replay for a video needs
    the agentview alone).
    """

    def __init__(self, robosuite_env: Any) -> None:
        self.render = True
        self.only: frozenset[str] | None = None  # render these cameras only (None = all)
        self.rendered = 0  # camera sensor calls that rendered
        self.skipped = 0  # camera sensor calls answered without rendering
        for observable in robosuite_env._observables.values():
            if observable.modality == "image":
                observable._sensor = self._wrap(observable._sensor, observable.name.removesuffix("_image"))

    def _wrap(self, sensor: Any, camera: str) -> Any:
        last: dict[str, Any] = {}

        @functools.wraps(sensor)
        def maybe_render(obs_cache: dict[str, Any]) -> Any:
            if (self.render and (self.only is None or camera in self.only)) or "frame" not in last:
                last["frame"] = sensor(obs_cache)
                self.rendered += 1
            else:
                self.skipped += 1
            return last["frame"]

        return maybe_render


def camera_switch(env: Any) -> CameraSwitch:
    """The env's ``CameraSwitch``, made on first use and kept on the robosuite env (wrappers share it)."""
    base = env.env
    switch = getattr(base, "_openvla_camera_switch", None)
    if switch is None:
        switch = base._openvla_camera_switch = CameraSwitch(base)
    return switch


def policy_cameras(policy: Any) -> list[str]:
    """The camera roles ``policy`` reads (a ``Policy``'s or a server's model; ["primary"] when it does not say)."""
    cameras = list(getattr(policy, "cameras", None) or ["primary"])
    unknown = [c for c in cameras if c not in LIBERO_CAMERAS]
    if unknown:
        raise ValueError(f"the policy reads cameras {unknown} that LIBERO does not have ({sorted(LIBERO_CAMERAS)})")
    return cameras


def libero_observation(obs: dict[str, Any], cameras: list[str], instruction: str) -> dict[str, Any]:
    """A LIBERO observation as the policy takes it: every camera it reads through ``LIBERO_CAMERA``, the state."""
    from openvla.sim.libero_env import camera_image, proprio

    images = {role: LIBERO_CAMERA(camera_image(obs, LIBERO_CAMERAS[role])) for role in cameras}
    return {"images": images, "instruction": instruction, "proprio": proprio(obs)}


def libero_gripper(actions: np.ndarray) -> np.ndarray:
    """Policy actions [..., 7] (gripper in [0, 1], 1 = open) → LIBERO actions (gripper −1 open / +1 close)."""
    out = np.array(actions, dtype=np.float64, copy=True)
    g = 2.0 * out[..., -1] - 1.0  # [0, 1] → [−1, 1]
    out[..., -1] = -np.sign(g)  # binarize, then LIBERO's sign (+1 = close)
    return out


# The OpenVLA / OpenVLA-OFT papers' column names.
SUITE_COLUMNS = {
    "libero_spatial": "Spatial",
    "libero_object": "Object",
    "libero_goal": "Goal",
    "libero_10": "Long",
    "libero_90": "LIBERO-90",
}


@dataclass(frozen=True)
class EpisodeSpec:
    suite: str
    task_id: int
    init_index: int  # index into the task's fixed initial states


@dataclass
class EpisodeResult:
    suite: str
    task_id: int
    init_index: int
    success: bool
    steps: int  # policy steps taken (no-op steps not counted)
    seconds: float
    query_seconds: list[float] = field(default_factory=list)  # wall time of each policy query (model latency)
    actions: np.ndarray | None = None  # (steps, 7) actions executed, in the policy's convention
    seed: int = 0  # the episode's seed (fixture layout, random policy): a function of (eval seed, suite, task, state)
    renders: int = 0  # camera frames rendered (one per camera and env step that someone reads)
    renders_skipped: int = 0  # camera frames not rendered because nothing read them (CameraSwitch)


def episode_seed(seed: int, suite: str, task_id: int, init_index: int) -> int:
    """The seed of one episode: the same (seed, suite, task, state) always gives the same scene and draws."""
    return int(np.random.SeedSequence([seed, zlib.crc32(suite.encode()), task_id, init_index]).generate_state(1)[0])


@dataclass
class EpisodeRollout:
    """What ``run_episode`` returns."""

    success: bool
    steps: int
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
    actions: list[np.ndarray] | None = None,
) -> EpisodeRollout:
    """One episode from ``init_state``: success, policy steps and the time of every model query.

    ``policy`` answers ``act(observation, session=...)`` (``Policy``, ``RemotePolicy``, ``RandomPolicy``); its
    ``queries`` counter tells which steps ran the model. ``actions``, when given, receives every action executed.
    ``layout_seed`` fixes where the reset places LIBERO's joint-less fixtures (``reset_to_state``). A policy with
    ``will_query(session)`` False for the next step (open-loop execution between queries) gets the previous
    observation again, and the env skips rendering that step (``CameraSwitch``): same actions, fewer renders.
    """
    from openvla.sim.libero_env import reset_to_state

    cameras = policy_cameras(policy)
    will_query = getattr(policy, "will_query", lambda _session: True)
    switch = camera_switch(env)
    obs = None
    try:
        switch.render = False  # the reset's frames are never read: the no-op steps follow
        reset_to_state(env, init_state, layout_seed)
        policy.reset(session)
        for i in range(NUM_NOOP_STEPS):
            switch.render = i == NUM_NOOP_STEPS - 1  # only the last no-op's frames are read
            obs, _, _, _ = env.step(NOOP_ACTION.copy())
        query_seconds: list[float] = []
        observation: dict[str, Any] = {}
        for step in range(max_steps):
            if switch.render:  # this step's frames were rendered because the policy reads them
                observation = libero_observation(obs, cameras, instruction)
            queries, start = policy.queries, time.perf_counter()
            action = policy.act(observation, session=session)
            if policy.queries > queries:
                query_seconds.append(time.perf_counter() - start)
            if actions is not None:
                actions.append(np.asarray(action).copy())
            # The middle steps of an open-loop chunk read no observation: their frames need no render.
            switch.render = will_query(session)
            obs, _, done, _ = env.step(libero_gripper(action))
            if done:
                return EpisodeRollout(True, step + 1, query_seconds)
    finally:
        switch.render = True
    return EpisodeRollout(False, max_steps, query_seconds)


def replay_episode(
    env: Any, init_state: np.ndarray, actions: np.ndarray, *, layout_seed: int | None = None
) -> tuple[list[np.ndarray], bool]:
    """(upright agentview frames, success) of executing ``actions`` (the policy's convention) from ``init_state``.

    An episode is a function of its initial state, layout seed and actions, so the videos are made afterwards, for
    the few episodes chosen, instead of rendering every step of every episode in case it is chosen. The frames are
    the observations before each action and after the last one; ``success`` tells whether the replay reached the
    goal at the last action as the rollout did (a check that it reproduced the rollout).
    """
    from openvla.sim.libero_env import camera_image, reset_to_state

    switch = camera_switch(env)
    switch.render, switch.only = True, frozenset({"agentview"})
    try:
        reset_to_state(env, init_state, layout_seed)
        obs = None
        for _ in range(NUM_NOOP_STEPS):
            obs, _, _, _ = env.step(NOOP_ACTION.copy())
        frames, done = [rotate_180(camera_image(obs, "agentview"))], False
        for action in actions:
            obs, _, done, _ = env.step(libero_gripper(action))
            frames.append(rotate_180(camera_image(obs, "agentview")))
    finally:
        switch.only = None
    return frames, bool(done)


# --- worker side ------------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def policy_spec(
    cfg: EvalLiberoConfig,
    *,
    kind: Literal["model", "server", "random"] = "model",
    model_dir: str = "",
    server_url: str = "",
    stats_path: str = "",
) -> PolicySpec:
    """The ``PolicySpec`` an evaluation with ``cfg`` gives its workers. The stage and every bench script build it
    here, so a diagnostic runs the policy exactly as ``eval-libero`` does (execution, crop, threads per worker)."""
    return PolicySpec(
        kind=kind,
        model_dir=model_dir,
        server_url=server_url,
        unnorm_key=cfg.unnorm_key,
        center_crop=cfg.center_crop,
        execution=cfg.execution,
        ensemble_decay=cfg.ensemble_decay,
        open_loop_steps=cfg.open_loop_steps,
        stats_path=stats_path,
        seed=cfg.seed,
        threads=max(1, (os.cpu_count() or 1) // max(cfg.workers, 1)),  # the workers share the cores
    )


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


def _worker_env(cfg: EvalLiberoConfig, spec: PolicySpec, suite: str, task_id: int, init_index: int) -> tuple:
    """(policy, env, task, fixed initial states) of this worker for one episode: one live environment per worker,
    rebuilt only when the task changes."""
    from openvla.sim.libero_env import get_task, init_states, make_env

    state = _worker_state(cfg, spec)
    policy, envs = state["policy"], state["envs"]
    if (suite, task_id) not in envs:
        _close_envs()
        envs = _WORKER["envs"]
        task = get_task(suite, task_id)
        cameras = tuple(dict.fromkeys(["agentview", *(LIBERO_CAMERAS[c] for c in policy_cameras(policy))]))
        env = make_env(task, cfg.resolution, cameras, seed=cfg.seed, cheap_rendering=cfg.cheap_rendering)
        envs[(suite, task_id)] = (env, task, init_states(task))
    env, task, states = envs[(suite, task_id)]
    if init_index >= len(states):
        raise ValueError(
            f"{suite} task {task_id} has {len(states)} fixed initial states; "
            f"eval_libero.first_init_state + episodes_per_task must stay ≤ {len(states)}"
        )
    return policy, env, task, states


def _run_spec(job: tuple[EvalLiberoConfig, PolicySpec, EpisodeSpec]) -> EpisodeResult:
    cfg, spec, ep = job
    policy, env, task, states = _worker_env(cfg, spec, ep.suite, ep.task_id, ep.init_index)
    seed = episode_seed(cfg.seed, ep.suite, ep.task_id, ep.init_index)
    instruction = "" if cfg.blind else task.language
    if hasattr(policy, "seed"):  # the random baseline: one reproducible stream per episode
        policy.seed(seed)
    start = time.perf_counter()
    actions: list[np.ndarray] = []
    switch = camera_switch(env)
    rendered, skipped = switch.rendered, switch.skipped
    rollout = run_episode(
        env,
        states[ep.init_index],
        policy,
        instruction,
        max_steps=cfg.max_steps or task.max_steps,
        session=f"{ep.suite}/task{ep.task_id}/init{ep.init_index}",
        layout_seed=seed,
        actions=actions,
    )
    seconds = time.perf_counter() - start
    return EpisodeResult(ep.suite, ep.task_id, ep.init_index, rollout.success, rollout.steps, seconds,
                         rollout.query_seconds, np.stack(actions) if actions else None,
                         seed, switch.rendered - rendered, switch.skipped - skipped)  # fmt: skip


def _replay_spec(job: tuple[EvalLiberoConfig, PolicySpec, EpisodeResult]) -> list[np.ndarray]:
    cfg, spec, res = job
    _, env, _, states = _worker_env(cfg, spec, res.suite, res.task_id, res.init_index)
    frames, success = replay_episode(env, states[res.init_index], res.actions, layout_seed=res.seed)
    if success != res.success:
        log.warning("the replay of %s task %d state %d did not reproduce its outcome (%s): its video may differ",
                    res.suite, res.task_id, res.init_index, "success" if res.success else "failure")  # fmt: skip
    return frames


class EpisodeRunner:
    """Episodes on ``cfg.workers`` spawned processes (in this one for ≤ 1), each building its policy once and keeping
    one environment; the same workers replay the episodes chosen for videos."""

    def __init__(self, cfg: EvalLiberoConfig, spec: PolicySpec) -> None:
        self.cfg, self.spec = cfg, spec
        self._pool: Any = None

    def __enter__(self) -> EpisodeRunner:
        if self.cfg.workers > 1:  # spawn: never fork a process holding GL contexts, torch or TF threads
            self._pool = mp.get_context("spawn").Pool(self.cfg.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None
        else:
            _close_envs()
            _WORKER.clear()

    def run(self, episodes: list[EpisodeSpec]) -> Iterator[EpisodeResult]:
        """Every episode's result, in completion order."""
        jobs = [(self.cfg, self.spec, ep) for ep in episodes]
        if self._pool is None:
            return map(_run_spec, jobs)
        # chunks of a task's episodes keep each worker on one environment as long as possible
        chunksize = max(1, min(self.cfg.episodes_per_task // self.cfg.workers, 8))
        return self._pool.imap_unordered(_run_spec, jobs, chunksize=chunksize)

    def replay(self, results: list[EpisodeResult]) -> list[list[np.ndarray]]:
        """The agentview frames of each finished episode, replayed from its actions (``replay_episode``)."""
        jobs = [(self.cfg, self.spec, dataclasses.replace(r, query_seconds=[])) for r in results]
        return list(map(_replay_spec, jobs) if self._pool is None else self._pool.map(_replay_spec, jobs))


def run_episodes(cfg: EvalLiberoConfig, spec: PolicySpec, episodes: list[EpisodeSpec]) -> Iterator[EpisodeResult]:
    """Every episode's result, in completion order, on ``cfg.workers`` processes (or in this one for ≤ 1)."""
    with EpisodeRunner(cfg, spec) as runner:
        yield from runner.run(episodes)


@contextlib.contextmanager
def shared_policy(cfg: EvalLiberoConfig, spec: PolicySpec) -> Iterator[tuple[PolicySpec, Any]]:
    """(the spec the workers build their policy from, the shared server or None).

    With ``batch_queries`` (a model, several workers) the model is loaded once, here, behind the serve stage's app
    on a free loopback port, answering whole chunks (``execution: chunk``); each worker is a ``RemotePolicy`` that
    executes them as an in-process ``Policy`` would. The micro-batcher runs the queries that wait together in one
    forward (at most one per worker). Batched and one-at-a-time predictions are equal (tests/test_serve_model.py),
    so batching changes the time an evaluation takes, not its actions.
    """
    if not (cfg.batch_queries and spec.kind == "model"):
        yield spec, None
        return
    from openvla.config import ServeConfig
    from openvla.serve.server import BackgroundServer
    from openvla.tf_import import import_tensorflow

    import_tensorflow()  # the image transform's first use; the import order rule of the workers holds here too
    model = build_policy(dataclasses.replace(spec, execution="chunk"))
    with BackgroundServer(model, ServeConfig(max_batch=cfg.workers, execution="chunk")) as server:
        log.info("one policy for %d workers at %s (batch_queries)", cfg.workers, server.url)
        yield dataclasses.replace(spec, kind="server", server_url=server.url), server


class VideoSelection:
    """The first ``per_outcome`` successful and the first ``per_outcome`` failed episodes, in (task, state) order.

    Episodes finish in any order across workers, so the choice is made by episode index, not arrival. Keeping both
    outcomes means a run with a few successes still shows one, rather than only its first (failed) episodes. The
    chosen episodes are replayed for their frames afterwards (``EpisodeRunner.replay``).
    """

    def __init__(self, per_outcome: int) -> None:
        self.per_outcome = per_outcome
        self._kept: dict[str, dict[tuple[str, int, int], EpisodeResult]] = {"success": {}, "fail": {}}

    def offer(self, res: EpisodeResult) -> None:
        if self.per_outcome <= 0 or res.actions is None:
            return
        kept = self._kept["success" if res.success else "fail"]
        kept[(res.suite, res.task_id, res.init_index)] = res
        if len(kept) > self.per_outcome:
            del kept[max(kept)]

    def chosen(self) -> list[tuple[tuple[str, int, int, str], EpisodeResult]]:
        """((suite, task, state, outcome), result) of the kept episodes, successes first, each in episode order."""
        return [((*key, outcome), kept[key]) for outcome, kept in self._kept.items() for key in sorted(kept)]


# --- the stage ----------------------------------------------------------------------------------------------------
def evaluate_libero(
    cfg: EvalLiberoConfig,
    policy_spec: PolicySpec,
    metrics_path: str | Path | None = None,
    plots_dir: str | Path = "plots/libero",
    run: Any | None = None,
) -> dict[str, Any]:
    """Run every (suite, task, initial state) episode of ``cfg``; write plots/videos; return the summary metrics.

    The summary holds the success over all episodes, per suite (``suites.<suite>``, with its tasks) and the average of
    the suites' rates (``average_success_rate``), each with a 95% Wilson interval, and ``table``: the papers' row
    (Spatial / Object / Goal / Long / Average, in %).
    """
    from openvla.eval.video import write_mp4
    from openvla.sim.libero_env import get_task, num_tasks

    plots_dir = Path(plots_dir)
    if policy_spec.kind == "model" and not (Path(policy_spec.model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{policy_spec.model_dir}: no config.json; export a model first or use --policy random")
    health = _check_server(policy_spec, cfg) if policy_spec.kind == "server" else {}
    applied_crop = _applied_center_crop(policy_spec, health)
    task_ids = {suite: list(cfg.task_ids) or list(range(num_tasks(suite))) for suite in cfg.suites}
    tasks = {(suite, t): get_task(suite, t) for suite, ids in task_ids.items() for t in ids}
    episodes = [
        EpisodeSpec(suite, t, i)
        for suite, t in tasks
        for i in range(cfg.first_init_state, cfg.first_init_state + cfg.episodes_per_task)
    ]
    start = time.perf_counter()
    results: list[EpisodeResult] = []
    kept = VideoSelection(cfg.videos)
    bar = tqdm(total=len(episodes), desc=f"eval {'+'.join(cfg.suites)}", unit="ep", dynamic_ncols=True)
    with bar, shared_policy(cfg, policy_spec) as (worker_spec, server), EpisodeRunner(cfg, worker_spec) as runner:
        for res in runner.run(episodes):
            kept.offer(res)
            results.append(res)
            done = sum(r.success for r in results)
            bar.update(1)
            bar.set_postfix(success=f"{done}/{len(results)}")
            if run is not None:
                run.log_metrics({"episode_success": float(res.success), "episode_steps": res.steps}, step=len(results))
        batching = server.app.state.batcher.stats.as_dict() if server is not None else None
        chosen = kept.chosen()
        replayed = runner.replay([res for _, res in chosen]) if chosen else []
    videos = [
        str(write_mp4(plots_dir / "videos" / f"{suite}_task{t}_init{i}_{outcome}.mp4", frames))
        for ((suite, t, i, outcome), _), frames in zip(chosen, replayed, strict=True)
    ]
    minutes = (time.perf_counter() - start) / 60
    results.sort(key=lambda r: (cfg.suites.index(r.suite), r.task_id, r.init_index))

    per_suite: dict[str, Any] = {}
    for suite, ids in task_ids.items():
        in_suite = [r for r in results if r.suite == suite]
        per_task: dict[str, Any] = {}
        for t in ids:
            rs = [r for r in in_suite if r.task_id == t]
            wins = [r.steps for r in rs if r.success]
            per_task[str(t)] = {
                "language": tasks[(suite, t)].language,
                **success_summary(len(wins), len(rs)),
                "steps_mean": float(np.mean([r.steps for r in rs])) if rs else 0.0,
                "success_steps_mean": float(np.mean(wins)) if wins else None,
            }
        per_suite[suite] = {**success_summary(sum(r.success for r in in_suite), len(in_suite)), "tasks": per_task}
    total = success_summary(sum(r.success for r in results), len(results))
    average = float(np.mean([v["success_rate"] for v in per_suite.values()]))
    table = {SUITE_COLUMNS.get(suite, suite): round(100 * v["success_rate"], 1) for suite, v in per_suite.items()}
    table["Average"] = round(100 * average, 1)
    summary: dict[str, Any] = {
        "suites_evaluated": list(cfg.suites),
        "policy": policy_spec.kind,
        **({"server": policy_spec.server_url} if policy_spec.kind == "server" else {}),
        **total,
        "average_success_rate": average,
        "table": table,
        "steps_mean": float(np.mean([r.steps for r in results])) if results else 0.0,
        "minutes": minutes,
        "episodes_per_minute": len(results) / minutes if minutes > 0 else 0.0,
        "seconds_per_episode": float(np.median([r.seconds for r in results])) if results else 0.0,
        **policy_speed(results),
        "init_states": [cfg.first_init_state, cfg.first_init_state + cfg.episodes_per_task],
        "seed": cfg.seed,
        "execution": cfg.execution,
        "open_loop_steps": cfg.open_loop_steps,
        "center_crop": applied_crop,  # what the policy applied (eval_libero.center_crop null = the model's record)
        "center_crop_setting": cfg.center_crop,
        "blind": cfg.blind,
        **({"policy_batches": batching} if batching is not None else {}),
        "suites": per_suite,
        "videos": videos,
    }
    _write_plots(plots_dir, results, per_suite)
    if metrics_path is not None:
        atomic_write_json(metrics_path, summary)
    if run is not None:
        run.log_metrics({**total, "average_success_rate": average})
        for suite, v in per_suite.items():
            run.log_metrics({f"{suite}.success_rate": v["success_rate"]})
            run.log_metrics({f"{suite}.task{t}.success_rate": x["success_rate"] for t, x in v["tasks"].items()})
        run.log_artifacts(plots_dir, "libero")
    for suite, v in per_suite.items():
        log.info("LIBERO %s: %d/%d successes (%.1f%%, 95%% CI %.1f–%.1f%%)", suite, v["successes"], v["episodes"],
                 100 * v["success_rate"], 100 * v["ci95_low"], 100 * v["ci95_high"])  # fmt: skip
    log.info("| %s |", " | ".join(table))
    log.info("| %s |", " | ".join(f"{x:.1f}" for x in table.values()))
    log.info("%d episodes in %.1f min (%.1f episodes/min)", len(results), minutes, summary["episodes_per_minute"])
    return summary


def _applied_center_crop(spec: PolicySpec, health: dict[str, Any]) -> bool | None:
    """Whether the policy centre-crops its frames: the model's record unless ``spec.center_crop`` forces it; a
    server's own answer; None for a policy without a model (random) or a server that does not say."""
    if spec.kind == "server":
        crop = (health.get("transform") or {}).get("center_crop")
        return None if crop is None else bool(crop)
    if spec.kind != "model":
        return None
    from openvla.model import OpenVLAConfig
    from openvla.policy.transform import ModelTransform

    return ModelTransform.from_config(OpenVLAConfig.from_pretrained(spec.model_dir), spec.center_crop).center_crop


def _check_server(spec: PolicySpec, cfg: EvalLiberoConfig) -> dict[str, Any]:
    """Reach the server before spawning workers, and say when it will not see what an in-process run would; its
    ``/health`` answer."""
    from openvla.serve.client import ActClient

    with ActClient(spec.server_url, timeout=30.0) as client:
        try:
            health = client.health()
        except Exception as err:
            raise ConnectionError(
                f"eval-libero --server {spec.server_url}: no /act server answers there ({err})"
            ) from err
    crop = _applied_center_crop(spec, health)
    if crop is not None and cfg.center_crop is not None and crop != cfg.center_crop:
        log.warning(
            "the server's model %s the centre crop but eval_libero.center_crop is %s: the server decides (its model "
            "records how it was trained), so this run is not comparable with an in-process one",
            "applies" if crop else "does not apply",
            cfg.center_crop,
        )
    served = (health.get("execution"), health.get("open_loop_steps", 0))
    if served[0] == "open_loop" and cfg.execution == "open_loop" and served[1] != cfg.open_loop_steps:
        log.warning(
            "the server runs %s actions of each chunk before the next query (serve.open_loop_steps = %s) but "
            "eval_libero.open_loop_steps is %s: the server decides, so this run is not comparable with an "
            "in-process one",
            served[1] or "all",
            served[1],
            cfg.open_loop_steps,
        )
    log.info("evaluating the /act server at %s: %s", spec.server_url, health)
    return health


def policy_speed(results: list[EpisodeResult]) -> dict[str, float]:
    """Model latency per query (median, p90, ms), queries per episode, the share of episode time spent in the policy
    (the rest is simulation and rendering), and actions/s = executed actions per second
    of policy time (the simulator and rendering excluded): with chunks executed open loop one query covers K
    actions; temporal ensembling queries every step. Camera renders per episode, and the share skipped because no
    query read them (open loop)."""
    times = [t for r in results for t in r.query_seconds]
    if not times:
        return {}
    steps = sum(r.steps for r in results)
    episode_seconds = sum(r.seconds for r in results)
    skipped = sum(r.renders_skipped for r in results)
    return {
        "policy_time_fraction": float(np.sum(times)) / episode_seconds if episode_seconds > 0 else 0.0,
        "query_latency_ms_median": 1000 * float(np.median(times)),
        "query_latency_ms_p90": 1000 * float(np.percentile(times, 90)),
        "queries_per_episode": len(times) / len(results),
        "actions_per_second": steps / float(np.sum(times)),
        "camera_renders_per_episode": sum(r.renders for r in results) / len(results),
        "camera_renders_skipped_fraction": skipped / max(1, skipped + sum(r.renders for r in results)),
    }


def _write_plots(plots_dir: Path, results: list[EpisodeResult], per_suite: dict[str, Any]) -> None:
    """``episodes.csv`` (one row per episode, with its seed), ``success.csv`` (per suite and task, Wilson interval)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "episodes.csv", "w", newline="") as f:
        fields = ["suite", "task_id", "init_index", "success", "steps", "seconds", "queries", "seed"]
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in results:
            row = {k: v for k, v in asdict(r).items() if k in fields}
            row["success"] = int(row["success"])
            row["queries"] = len(r.query_seconds)
            w.writerow(row)
    with open(plots_dir / "success.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["suite", "task_id", "success_rate", "ci95_low", "ci95_high", "episodes"])
        for suite, v in per_suite.items():
            for t, x in v["tasks"].items():
                w.writerow([suite, t, x["success_rate"], x["ci95_low"], x["ci95_high"], x["episodes"]])
