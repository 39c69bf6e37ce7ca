"""Bridge / WidowX evaluation (DESIGN §11): offline on held-out RLDS episodes, or live on a robot.

Offline (``eval_bridge.mode=offline``, what runs without a robot): the held-out episodes of any registered dataset
(``bridge_orig`` for BridgeData, ``libero_embedded`` for the embedded default) are read in order through the
dataset's standardization transform, with the training pipeline's own image resize and action normalization and no
augmentation; every frame goes through ``Policy.predict`` (the model's own observation transform, then batched
greedy decoding), and ``offline_metrics.action_metrics``
compares the predictions with the recorded actions (L1 in dataset units and in normalized space, gripper accuracy,
action-token accuracy). The first episodes' predicted and true trajectories are written as CSV under the plots
folder for ``dvc plots show``.

Models with OpenVLA-OFT options (``openvla.policy``): each frame's raw proprio state (``observation/proprio`` after
the dataset's standardization, not normalized: the model normalizes it with its own statistics) goes to a model
with ``use_proprio``; the FIRST action of a predicted chunk (the current step) is what the metrics above compare, and
a model with K > 1 additionally gets ``chunk_l1_normalized`` (with ``chunk_l1_normalized.step<k>``): the L1 of the
whole chunk against the recorded actions t … t+K−1 in normalized space, the indices clamped at the episode's last
step as the training pipeline clamps them (``chunk_window``). The summary says which ``action_head`` produced the
tokens (with the ``l1`` head "token accuracy" is bin agreement of the regressed values) and the ``action_chunk`` K.

Live (``eval_bridge.mode=live``): ``run_live_episode`` drives a ``RobotClient`` (the WidowX through its
``widowx_envs`` client at host:port) at ``control_hz`` (5 Hz) for ``steps`` (60) steps: observe, predict with the
``unnorm_key`` statistics (``bridge_orig``), send the action unchanged without waiting for the motion, sleep out the
rest of the period. The frame goes through the model's own transform (``Policy``): the training resize, and the centre
crop only for a model trained with crop augmentation (OpenVLA's Bridge model was not). A model predicting
chunks (K > 1) has them executed by ``Policy.act`` (``execution``: "ensemble", the default, queries every
step and sends the temporal ensemble of the predictions for that step; "open_loop" queries once and sends the K
actions one per step, so the model runs once per K steps). The model is queried only when the executor asks for it;
K = 1 models query every step and send the action unchanged, as before. A model with ``use_proprio`` gets the
robot's ``state`` (``get_observation()["state"]``, which must be the dataset's proprio convention, e.g. Bridge's
EEF xyz + rpy + gripper) with every query.

    summary = evaluate_bridge(
        cfg, model_dir="models/openvla-embedded-hf", data_dir="data/rlds", plots_dir="plots/bridge"
    )
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openvla.eval.offline_metrics import action_metrics, binarize_gripper, chunk_l1, chunk_targets, dim_names
from openvla.eval.robot_client import Clock, RobotClient, RobotError, SystemClock, check_observation
from openvla.io import atomic_write_text

log = logging.getLogger(__name__)

TRAJECTORIES_FILE = "trajectories.csv"  # predicted vs true actions of the first episodes (x: frame)
PER_DIM_FILE = "l1_per_dim.csv"  # one row per action dimension (bar chart)
PER_EPISODE_FILE = "episodes.csv"  # one row per evaluated episode (x: episode)
LIVE_ACTIONS_FILE = "live_actions.csv"  # actions sent to the robot in live mode (x: step)


# ----------------------------------------------------------------------------------------------------------------
# Held-out episodes
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Episode:
    """One held-out episode as the model sees it (T frames)."""

    index: int  # position in the split's order
    instruction: str
    images: np.ndarray  # uint8 (T, S, S, 3): the first camera (primary), decoded and resized as in training
    actions: np.ndarray  # float32 (T, D): standardized actions in the dataset's units (gripper 1 = open)
    actions_normalized: np.ndarray  # float32 (T, D): the same normalized as training normalizes them
    proprio: np.ndarray | None = None  # float32 (T, P): the raw (standardized, unnormalized) proprio state per frame
    camera_images: dict[str, np.ndarray] | None = None  # every camera read, role → (T, S, S, 3); None = images only

    def frame(self, t: int, cameras: Sequence[str]) -> Any:
        """Frame ``t`` as ``Policy.predict`` takes it: the image (one camera) or {role: image} (several)."""
        if len(cameras) == 1 and cameras[0] == "primary":
            return self.images[t]
        images = self.camera_images or {"primary": self.images}
        missing = [c for c in cameras if c not in images]
        if missing:
            raise ValueError(f"eval-bridge: episode {self.index} has no {missing} images (loaded: {sorted(images)})")
        return {c: images[c][t] for c in cameras}


def iter_episodes(
    data_dir: str | Path,
    dataset_name: str,
    action_stats: Mapping[str, Any],
    *,
    image_size: int,
    split: str = "val",
    normalization: str = "bounds_q99",
    max_episodes: int = 0,
    cameras: Sequence[str] = ("primary",),
) -> Iterator[Episode]:
    """Episodes of ``split`` in file order, no shuffling, no augmentation (``max_episodes`` 0 = all), with the
    images of ``cameras`` (the model's camera roles; ``images`` is the first).

    ``split="val"`` is the builder's ``val`` split, or the last 5% of ``train`` when there is none (DESIGN §6).
    The training pipeline's pieces are used as they are: the dataset's standardization transform and restructure
    (``standardized_trajectories``), the empty-instruction filter, ``normalize_tf`` with ``action_stats`` (the
    model's statistics for its ``unnorm_key``) and ``decode_and_resize`` (lanczos3, antialiased). ``proprio`` is the
    frames' ``observation/proprio`` as restructured (not normalized; zeros like the action for a dataset without
    state keys).
    """
    from openvla.data import traj_transforms as tt
    from openvla.data.image_ops import decode_and_resize
    from openvla.data.loader import standardized_trajectories
    from openvla.data.normalization import normalize_tf
    from openvla.tf_import import import_tensorflow

    tf = import_tensorflow()
    cameras = tuple(cameras)
    trajectories = standardized_trajectories(
        data_dir, dataset_name, split=split, train=False, shuffle=False, num_parallel_reads=1, num_parallel_calls=1,
        cameras=cameras,
    ).filter(tt.has_instruction)  # fmt: skip

    def decode(encoded):
        return tf.map_fn(
            lambda x: decode_and_resize(x, image_size),
            encoded,
            fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.uint8),
        )

    def prepare(traj: dict) -> dict:
        return {
            "images": {c: decode(traj["observation"][f"image_{c}"]) for c in cameras},
            "actions": traj["action"],
            "actions_normalized": normalize_tf(traj["action"], action_stats, normalization),
            "proprio": traj["observation"]["proprio"],
            "instruction": traj["task"]["language_instruction"][0],
        }

    dataset = trajectories.dataset.map(prepare, num_parallel_calls=1)
    if max_episodes > 0:
        dataset = dataset.take(max_episodes)
    for index, item in enumerate(dataset.as_numpy_iterator()):
        yield Episode(
            index=index,
            instruction=item["instruction"].decode("utf-8"),
            images=item["images"][cameras[0]],
            camera_images=dict(item["images"]),
            actions=item["actions"].astype(np.float32),
            actions_normalized=item["actions_normalized"].astype(np.float32),
            proprio=item["proprio"].astype(np.float32),
        )


# ----------------------------------------------------------------------------------------------------------------
# Offline evaluation
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class EpisodeResult:
    """Predictions for one episode, each (T, D); ``pred_chunk`` (T, K, D) normalized chunks of chunked models."""

    index: int
    instruction: str
    true: np.ndarray
    true_normalized: np.ndarray
    true_tokens: np.ndarray
    pred: list[np.ndarray] = field(default_factory=list)  # filled batch by batch, stacked at the end
    pred_normalized: list[np.ndarray] = field(default_factory=list)
    pred_tokens: list[np.ndarray] = field(default_factory=list)
    pred_chunk: list[np.ndarray] = field(default_factory=list)  # empty for plain OpenVLA models

    @property
    def chunk_size(self) -> int:
        """K of the predicted chunks (1 without chunks)."""
        return int(self.pred_chunk[0].shape[1]) if self.pred_chunk else 1

    def stacked(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name), axis=0)


def predict_episodes(
    policy: Any, episodes: Iterable[Episode], *, unnorm_key: str | None, batch_size: int = 16
) -> list[EpisodeResult]:
    """Run every frame of ``episodes`` through ``policy.predict`` in batches that may span episodes.

    A policy whose model reads the proprio state (``uses_proprio``) gets each frame's raw ``Episode.proprio``.
    """
    from tqdm import tqdm

    uses_proprio = bool(policy.uses_proprio)
    cameras = list(getattr(policy, "cameras", None) or ["primary"])
    results: list[EpisodeResult] = []
    pending: list[tuple[EpisodeResult, np.ndarray, str, np.ndarray | None]] = []  # (episode, image, text, proprio)

    def flush() -> None:
        if not pending:
            return
        images, instructions = [p[1] for p in pending], [p[2] for p in pending]
        proprios = [p[3] for p in pending] if uses_proprio else None
        prediction = policy.predict(images, instructions, proprios=proprios, unnorm_key=unnorm_key)
        chunk = prediction.chunk
        for i, (result, _, _, _) in enumerate(pending):
            result.pred.append(prediction.actions[i : i + 1])
            result.pred_normalized.append(prediction.normalized[i : i + 1])
            result.pred_tokens.append(prediction.tokens[i : i + 1])
            if chunk is not None:
                result.pred_chunk.append(chunk[i : i + 1])
        pending.clear()

    with tqdm(desc="eval-bridge frames", unit="frame", disable=None) as bar:
        for episode in episodes:
            result = EpisodeResult(
                index=episode.index,
                instruction=episode.instruction,
                true=episode.actions,
                true_normalized=episode.actions_normalized,
                true_tokens=np.asarray(policy.action_tokenizer.encode(episode.actions_normalized), dtype=np.int64),
            )
            results.append(result)
            if uses_proprio and (episode.proprio is None or len(episode.proprio) != len(episode.images)):
                raise ValueError(
                    f"eval-bridge: the model reads the proprio state (use_proprio) but episode {episode.index} "
                    "has no proprio state per frame"
                )
            for t in range(len(episode.images)):
                state = episode.proprio[t] if uses_proprio else None
                pending.append((result, episode.frame(t, cameras), episode.instruction, state))
                if len(pending) >= batch_size:
                    bar.update(len(pending))
                    flush()
        bar.update(len(pending))
        flush()
    for result in results:
        for name in ("pred", "pred_normalized", "pred_tokens", "pred_chunk"):
            setattr(result, name, [result.stacked(name)] if getattr(result, name) else [])
    return results


def _csv(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
    return buffer.getvalue()


def write_offline_plots(
    results: list[EpisodeResult], summary: Mapping[str, float], plots_dir: str | Path, plot_episodes: int
) -> None:
    """``trajectories.csv`` (first ``plot_episodes`` episodes: frame, episode, step, <dim>_true, <dim>_pred),
    ``l1_per_dim.csv`` (dim, l1, l1_normalized, token_accuracy) and ``episodes.csv`` (per-episode metrics)."""
    plots_dir = Path(plots_dir)
    names = dim_names(results[0].true.shape[1])
    header = ["frame", "episode", "step"] + [f"{n}_{kind}" for n in names for kind in ("true", "pred")]
    rows, frame = [], 0
    for result in results[:plot_episodes]:
        pred = result.stacked("pred")
        for step in range(len(result.true)):
            values = [float(v) for d in range(len(names)) for v in (result.true[step, d], pred[step, d])]
            rows.append([frame, result.index, step, *values])
            frame += 1
    atomic_write_text(plots_dir / TRAJECTORIES_FILE, _csv(header, rows))
    per_dim = [[n, summary[f"l1.{n}"], summary[f"l1_normalized.{n}"], summary[f"token_accuracy.{n}"]] for n in names]
    atomic_write_text(plots_dir / PER_DIM_FILE, _csv(["dim", "l1", "l1_normalized", "token_accuracy"], per_dim))
    per_episode_metrics = [episode_metrics(r) for r in results]
    per_episode = [[r.index, len(r.true), *m.values()] for r, m in zip(results, per_episode_metrics, strict=True)]
    header = ["episode", "frames", *per_episode_metrics[0]]
    atomic_write_text(plots_dir / PER_EPISODE_FILE, _csv(header, per_episode))


def episode_metrics(result: EpisodeResult) -> dict[str, float]:
    """The headline metrics of one episode (logged to MLflow per episode); ``chunk_l1_normalized`` when K > 1."""
    pred, pred_norm, pred_tokens = (
        result.stacked("pred"),
        result.stacked("pred_normalized"),
        result.stacked("pred_tokens"),
    )
    out = {
        "l1": float(np.abs(pred - result.true).mean()),
        "l1_normalized": float(np.abs(pred_norm - result.true_normalized).mean()),
        "gripper_accuracy": float((binarize_gripper(pred[:, -1]) == binarize_gripper(result.true[:, -1])).mean()),
        "token_accuracy": float((pred_tokens == result.true_tokens).mean()),
    }
    if result.chunk_size > 1:
        chunks = result.stacked("pred_chunk")
        out["chunk_l1_normalized"] = float(
            np.abs(chunks - chunk_targets(result.true_normalized, len(chunks[0]))).mean()
        )
    return out


def evaluate_offline(
    policy: Any,
    episodes: Iterable[Episode],
    *,
    unnorm_key: str | None,
    batch_size: int = 16,
    plot_episodes: int = 3,
    plots_dir: str | Path | None = None,
    run: Any = None,
) -> tuple[dict[str, Any], list[EpisodeResult]]:
    """Predict every frame, compute ``action_metrics`` over all frames (of the chunk's first action for chunked
    models, plus ``chunk_l1_normalized`` when K > 1), write plots, log to ``run`` (MLflow)."""
    results = [r for r in predict_episodes(policy, episodes, unnorm_key=unnorm_key, batch_size=batch_size) if r.pred]
    if not results:
        raise ValueError("eval-bridge: no held-out frames to evaluate (empty split, or every episode filtered out)")
    summary: dict[str, Any] = {"episodes": len(results)}
    summary.update(
        action_metrics(
            np.concatenate([r.stacked("pred") for r in results]),
            np.concatenate([r.true for r in results]),
            np.concatenate([r.stacked("pred_normalized") for r in results]),
            np.concatenate([r.true_normalized for r in results]),
            np.concatenate([r.stacked("pred_tokens") for r in results]),
            np.concatenate([r.true_tokens for r in results]),
        )
    )
    chunk = results[0].chunk_size
    if chunk > 1:
        summary.update(
            chunk_l1(
                np.concatenate([r.stacked("pred_chunk") for r in results]),
                np.concatenate([chunk_targets(r.true_normalized, chunk) for r in results]),
            )
        )
        log.info("offline: K=%d chunks, chunk L1 (normalized) %.4f", chunk, summary["chunk_l1_normalized"])
    log.info(
        "offline: %d episodes, %d frames, L1 %.4f (normalized %.4f), gripper acc %.3f, token acc %.3f",
        summary["episodes"],
        summary["frames"],
        summary["l1"],
        summary["l1_normalized"],
        summary["gripper_accuracy"],
        summary["token_accuracy"],
    )
    summary["action_head"] = policy.action_head  # what "token_accuracy" means
    summary["action_chunk"] = chunk
    if plots_dir is not None:
        write_offline_plots(results, summary, plots_dir, plot_episodes)
    if run is not None:
        run.set_tags({"eval_bridge.action_head": summary["action_head"]})
        for result in results:
            run.log_metrics({f"episode/{k}": v for k, v in episode_metrics(result).items()}, step=result.index)
        run.log_metrics(summary)
        if plots_dir is not None:
            run.log_artifacts(plots_dir, artifact_path="plots/bridge")
    return summary, results


# ----------------------------------------------------------------------------------------------------------------
# Live evaluation
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class LiveResult:
    """What one live episode did."""

    actions: list[np.ndarray]  # every action sent, in order
    periods: list[float]  # seconds between consecutive control ticks (observation times)
    inference_seconds: list[float]  # policy time per step (the model query, if any, + the chunk executor)
    overruns: int  # steps whose observe + predict + send took longer than the period
    queries: int = 0  # model queries (= steps for K = 1; steps / K for chunks executed open loop)
    execution: str = "step"  # "step" (K = 1: one query per step), "open_loop" or "ensemble"

    def summary(self, control_hz: float) -> dict[str, float]:
        periods = np.asarray(self.periods) if self.periods else np.zeros(1)
        inference = np.asarray(self.inference_seconds) if self.inference_seconds else np.zeros(1)
        return {
            "steps": len(self.actions),
            "control_hz": float(control_hz),
            "period_mean_s": float(periods.mean()),
            "period_max_s": float(periods.max()),
            "inference_mean_s": float(inference.mean()),
            "inference_max_s": float(inference.max()),
            "overruns": int(self.overruns),
            "queries": int(self.queries),
        }


def run_live_episode(
    policy: Any,
    robot: RobotClient,
    instruction: str,
    *,
    steps: int = 60,
    control_hz: float = 5.0,
    clock: Clock | None = None,
    unnorm_key: str | None = None,
) -> LiveResult:
    """Reset, then ``steps`` times: observe, ``policy.act``, send the action (non-blocking), sleep until the next tick.

    Ticks are ``1 / control_hz`` apart, measured from the first observation; a step that overruns its tick starts
    the next one immediately and the schedule restarts from there (no burst of catch-up steps).

    ``policy`` is a ``Policy`` (or anything with its ``act`` / ``reset`` / ``queries``): it executes a chunking
    model's chunks as its ``execution`` says and queries the model only when its executor asks; a K = 1 model is
    queried every step and its action is sent unchanged. A model with ``use_proprio`` gets the observation's
    ``state`` with every query.
    """
    if control_hz <= 0 or steps < 1:
        raise ValueError(f"eval_bridge: control_hz must be > 0 and steps ≥ 1, got {control_hz} and {steps}")
    clock = clock or SystemClock()
    period = 1.0 / control_hz
    uses_proprio = bool(getattr(policy, "uses_proprio", False))
    session = "live"
    robot.reset()
    policy.reset(session)
    execution = getattr(policy, "execution", "chunk")
    mode = execution if int(getattr(policy, "chunk_size", 1)) > 1 and execution != "chunk" else "step"
    result = LiveResult(actions=[], periods=[], inference_seconds=[], overruns=0, execution=mode)
    next_tick = clock.monotonic()
    last_tick: float | None = None
    for _ in range(steps):
        tick = clock.monotonic()
        if last_tick is not None:
            result.periods.append(tick - last_tick)
        last_tick = tick
        obs = check_observation(robot.get_observation())
        if uses_proprio and np.asarray(obs.get("state", [])).size == 0:
            raise RobotError(
                "the model reads the proprio state (use_proprio) but got none: the robot's observation needs a "
                "'state' in the dataset's proprio convention"
            )
        start = clock.monotonic()
        queries = policy.queries
        observation = {"image": obs["image"], "instruction": instruction, "unnorm_key": unnorm_key}
        if "wrist_image" in obs:  # a two-camera model (camera_roles primary + wrist) reads it
            observation["wrist_image"] = obs["wrist_image"]
        if uses_proprio:
            observation["proprio"] = obs["state"]
        action = policy.act(observation, session=session)
        result.queries += policy.queries - queries
        result.inference_seconds.append(clock.monotonic() - start)
        robot.step(action)
        result.actions.append(action)
        next_tick += period
        wait = next_tick - clock.monotonic()
        if wait > 0:
            clock.sleep(wait)
        else:
            result.overruns += 1
            next_tick = clock.monotonic()
    return result


def write_live_plots(result: LiveResult, plots_dir: str | Path) -> None:
    actions = np.asarray([np.asarray(a, dtype=np.float64).reshape(-1) for a in result.actions])
    names = dim_names(actions.shape[1])
    rows = [[step, *[float(v) for v in row]] for step, row in enumerate(actions)]
    atomic_write_text(Path(plots_dir) / LIVE_ACTIONS_FILE, _csv(["step", *names], rows))


# ----------------------------------------------------------------------------------------------------------------
# The stage's library call
# ----------------------------------------------------------------------------------------------------------------
def evaluate_bridge(
    cfg: Any,
    *,
    model_dir: str | Path,
    data_dir: str | Path,
    plots_dir: str | Path,
    tokenizer: str = "mistral-v1",
    run: Any = None,
    robot: RobotClient | None = None,
    clock: Clock | None = None,
    policy: Any = None,
) -> dict[str, Any]:
    """The ``eval-bridge`` stage: ``cfg`` is ``EvalBridgeConfig``; returns the summary for ``metrics/bridge.json``.

    ``robot`` / ``clock`` / ``policy`` replace the WidowX client, the system clock and the ``Policy`` loaded from
    ``model_dir`` (tests, dry runs). Live mode executes a chunking model's chunks as ``cfg.execution`` says
    ("open_loop" or "ensemble", with ``cfg.ensemble_decay``); K = 1 models ignore them.
    """
    unnorm_key = cfg.unnorm_key or None
    if policy is None:
        from openvla.policy import Policy

        policy = Policy.from_pretrained(
            model_dir, device=cfg.device, dtype=cfg.dtype, tokenizer=tokenizer, unnorm_key=unnorm_key
        )
    if run is not None:
        run.set_tags({"eval_bridge.model_dir": str(model_dir), "eval_bridge.mode": cfg.mode})
    if cfg.mode == "offline":
        stats = policy.action_stats(unnorm_key)
        episodes = iter_episodes(
            data_dir,
            cfg.dataset_name,
            stats,
            image_size=policy.image_size,
            split=cfg.split,
            normalization=getattr(policy.config, "action_normalization", "bounds_q99"),
            max_episodes=cfg.max_episodes,
            cameras=policy.cameras,
        )
        summary, _ = evaluate_offline(
            policy,
            episodes,
            unnorm_key=unnorm_key,
            batch_size=cfg.batch_size,
            plot_episodes=cfg.plot_episodes,
            plots_dir=plots_dir,
            run=run,
        )
        return summary
    if cfg.mode != "live":
        raise ValueError(f"eval_bridge.mode: expected 'offline' or 'live', got {cfg.mode!r}")
    if not cfg.instruction:
        raise ValueError(
            "eval_bridge.instruction: live mode needs the task instruction (e.g. 'put the spoon on the towel')"
        )
    policy.action_stats(unnorm_key)  # a wrong unnorm_key fails before the robot moves
    if robot is None:
        from openvla.eval.robot_client import WidowXRobot

        robot = WidowXRobot(cfg.host, cfg.port, image_size=cfg.robot_image_size, clock=clock)
    if policy.chunk_size > 1:
        policy.set_execution(cfg.execution or "ensemble", cfg.ensemble_decay, cfg.open_loop_steps)
    else:
        policy.set_execution("chunk")  # one action per query, sent unchanged
    log.info("live: %d steps at %.1f Hz on %s — %r", cfg.steps, cfg.control_hz, type(robot).__name__, cfg.instruction)
    result = run_live_episode(
        policy, robot, cfg.instruction, steps=cfg.steps, control_hz=cfg.control_hz, clock=clock, unnorm_key=unnorm_key
    )
    summary: dict[str, Any] = result.summary(cfg.control_hz)
    summary["action_chunk"] = policy.chunk_size
    summary["execution"] = result.execution
    write_live_plots(result, plots_dir)
    if run is not None:
        run.set_tags({"eval_bridge.execution": result.execution})
        for step, action in enumerate(result.actions):
            values = np.asarray(action, dtype=np.float64).reshape(-1)
            run.log_metrics(
                {f"live/{n}": float(v) for n, v in zip(dim_names(len(values)), values, strict=True)}, step=step
            )
        run.log_metrics(summary)
        run.log_artifacts(plots_dir, artifact_path="plots/bridge")
    return summary
