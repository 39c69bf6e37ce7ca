"""Typed configuration for every pipeline stage, read from ``params.yaml`` (the one source of truth).

Each top-level section of ``params.yaml`` maps to one frozen dataclass below. ``load_params`` validates the whole
file: an unknown key or a value of the wrong type raises ``ConfigError`` naming the file, the dotted key and what
was expected, so that ``dvc exp run -S finetune.lora_rnak=8`` fails loudly instead of being ignored.

Stages call ``load_section(path, "finetune")`` (or ``load_params``) and pass the dataclass to one library call;
nothing else in the project reads ``params.yaml``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

CAMERA_ROLES = ("primary", "secondary", "wrist")  # the data pipeline's image roles (openvla.data.loader.CAMERAS)


class ConfigError(ValueError):
    """A ``params.yaml`` value is missing, unknown or of the wrong type."""


# ----------------------------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProjectConfig:
    name: str = "openvla-embedded"  # MLflow experiment name: one experiment per pipeline
    seed: int = 7  # global seed; stages derive their own seeds from it unless they have one


@dataclass(frozen=True)
class DemosConfig:
    """Scripted-expert demonstrations in LIBERO (embedded default only, DESIGN §9)."""

    suite: str = "libero_spatial"  # LIBERO benchmark suite the demos come from
    task_ids: list[int] = field(default_factory=lambda: [0])  # tasks of the suite to demonstrate
    num_demos: int = 40  # successful demos per task (failed attempts are dropped and counted)
    max_attempts: int = 80  # give up on a task after this many attempts
    resolution: int = 128  # rendered camera size; small because software rendering dominates the CPU budget
    noise_fraction: float = 0.0  # fraction of demos whose *executed* xyz action gets Gaussian noise
    noise_std: float = 0.3  # std of that noise (the clean expert action is what gets stored)
    miss_fraction: float = 0.0  # fraction of demos whose first grasp misses on purpose, then recovers (expert.py)
    # Fraction of demos that start with the hand displaced (moved there unrecorded, openvla/sim/demos.py): partway
    # to the approach point and up to displaced_range metres beside it in x and y, as a policy's first chunk leaves it
    displaced_fraction: float = 0.0
    displaced_range: float = 0.04
    # The expert's proportional gain while it brings the open hand to the grasp point (openvla/sim/expert.py); 1.5 =
    # its gain everywhere. Lower: a slower, longer approach whose actions are proportional to the remaining offset.
    approach_gain: float = 1.5
    seed: int = 0  # seeds the initial-state sampling and the noise; same seed → same demos
    workers: int = 2  # simulator processes
    max_steps: int = 0  # step budget of one attempt; 0 = the suite's evaluation budget (220 for libero_spatial)
    cheap_rendering: bool = True  # no anti-aliasing/shadows/reflections (~3x faster); eval_libero must match
    init_states: Literal["sampled", "fixed"] = "sampled"  # fresh placement samples, or LIBERO's fixed states
    fixed_init_limit: int = 30  # "fixed": attempts use fixed states [0, this); keep ≤ eval_libero.first_init_state
    # Steps recorded after success while the expert finishes (opens, retreats). Evaluation stops at success, so they
    # only show the release that success needs (a bowl set on a plate counts once it rests there, after the opening).
    post_success_steps: int = 0
    # The expert also opens when its hand comes to rest on the way down (the object met its target before the
    # release point, as a bowl meets a plate's rim) instead of pushing until the phase's 40-step limit, a release no
    # camera shows. Off in the default, whose headline was measured without it (bowl → plate: docs/results.md).
    release_at_rest: bool = False

    def __post_init__(self) -> None:
        if self.post_success_steps < 0:
            raise ValueError(f"post_success_steps must be >= 0, got {self.post_success_steps}")
        if not 1 <= self.fixed_init_limit <= 50:
            raise ValueError(f"fixed_init_limit must be in [1, 50], got {self.fixed_init_limit}")
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise ValueError(f"noise_fraction must be in [0, 1], got {self.noise_fraction}")
        if not 0.0 <= self.miss_fraction <= 1.0:
            raise ValueError(f"miss_fraction must be in [0, 1], got {self.miss_fraction}")
        if not 0.0 <= self.displaced_fraction <= 1.0:
            raise ValueError(f"displaced_fraction must be in [0, 1], got {self.displaced_fraction}")
        if not 0.0 <= self.displaced_range <= 0.2:
            raise ValueError(f"displaced_range must be in [0, 0.2] metres, got {self.displaced_range}")
        if not 0.1 <= self.approach_gain <= 5.0:
            raise ValueError(f"approach_gain must be in [0.1, 5], got {self.approach_gain}")
        if self.num_demos < 1 or self.max_attempts < self.num_demos:
            raise ValueError(f"need 1 ≤ num_demos ≤ max_attempts, got {self.num_demos} and {self.max_attempts}")


@dataclass(frozen=True)
class ConvertConfig:
    """Raw episodes → RLDS (tensorflow-datasets builder)."""

    input_format: Literal["libero_hdf5", "npz", "lerobot"] = "libero_hdf5"  # see README "Your robot, end to end"
    dataset_name: str = "libero_embedded"  # TFDS builder name and registry key of the output
    version: str = "1.0.0"  # TFDS version directory
    drop_noops: bool = True  # OpenVLA's rule: arm-action norm (dims 0-5) < 1e-4 and gripper (last dim) unchanged
    rotate_180: bool = True  # LIBERO renders upside down; OpenVLA's converted datasets are rotated (npz: usually false)
    val_fraction: float = 0.0  # > 0 writes the last fraction of episodes to a `val` split
    image_size: int = 0  # 0 keeps the raw resolution; otherwise square resize at conversion
    action_dim: int = 7  # expected action dimension (7 = EEF deltas xyz + rpy + gripper); others are an error
    # input_format lerobot (a local LeRobot v3.0 dataset directory, docs/reference.md): camera role (primary /
    # secondary / wrist) → feature key of meta/info.json (a video or image feature). Empty = the dataset's only
    # camera as primary (several cameras need this mapping). The primary camera is required.
    lerobot_cameras: dict[str, str] = field(default_factory=dict)
    lerobot_state: str = "observation.state"  # feature written as the RLDS observation `state`
    lerobot_action: str = "action"  # feature written as the RLDS `action` (convert.action_dim values per frame)

    def __post_init__(self) -> None:
        roles = ("primary", "secondary", "wrist")  # the camera roles the RLDS writer has fields for
        unknown = [role for role in self.lerobot_cameras if role not in roles]
        if unknown:
            raise ValueError(f"lerobot_cameras: unknown camera role {unknown[0]!r}; expected one of {list(roles)}")
        empty = [role for role, key in self.lerobot_cameras.items() if not key.strip()]
        if empty:
            raise ValueError(f"lerobot_cameras.{empty[0]}: empty feature key (e.g. 'observation.images.top')")
        if self.lerobot_cameras and "primary" not in self.lerobot_cameras:
            raise ValueError(
                f"lerobot_cameras: no 'primary' camera (the RLDS `image`), got roles {sorted(self.lerobot_cameras)}"
            )
        for name in ("lerobot_state", "lerobot_action"):
            if not getattr(self, name).strip():
                raise ValueError(f"{name}: empty feature key")


@dataclass(frozen=True)
class StatsConfig:
    """Dataset statistics (DESIGN §5)."""

    dataset_name: str = "libero_embedded"  # registry key of the dataset to describe
    histogram_bins: int = 50  # bins of the per-dimension action histograms under plots/


@dataclass(frozen=True)
class DataConfig:
    """The training data pipeline shared by pretrain, finetune and evaluation (DESIGN §6)."""

    mixture: str = "libero_embedded"  # a mixture name from the registry, or a single dataset name
    window_size: int = 1  # observation history length
    chunk: int = 1  # actions per sample: 1 = OpenVLA (current action only); K = action chunk (OFT)
    shuffle_buffer: int = 2000  # frames; OpenVLA full scale uses 256000
    image_augmentation: bool = True  # random resized crop + color jitter (OpenVLA's order)
    balance_weights: bool = True  # mixture weights × num_transitions
    use_proprio: bool = False  # feed proprioception to the model (OFT-style proprio token)
    num_parallel_reads: int = 2  # tf.data read threads (split across datasets by weight)
    num_parallel_calls: int = 2  # tf.data transform threads
    registry_file: str = ""  # optional Python file calling register_dataset()/register_mixture() (your own robot data)
    # camera roles fed to the model, in order (OFT: [primary, wrist]); each image goes through the same vision backbone
    cameras: list[str] = field(default_factory=lambda: ["primary"])
    # training only: each episode's first start_steps frames appear start_weight times per pass (0 / 1 = as recorded)
    start_steps: int = 0
    start_weight: int = 1

    def __post_init__(self) -> None:
        if self.start_steps < 0 or self.start_weight < 1:
            raise ValueError(f"start_steps must be ≥ 0 and start_weight ≥ 1 (1 = no repeat), got {self.start_steps} "
                             f"and {self.start_weight}")  # fmt: skip
        unknown = [c for c in self.cameras if c not in CAMERA_ROLES]
        if not self.cameras or unknown or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(
                f"cameras: expected distinct camera roles out of {list(CAMERA_ROLES)} (e.g. [primary, wrist]), "
                f"got {self.cameras!r}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """The VLA. ``name`` picks a named configuration (``tiny``, ``small``, ``openvla-7b``)."""

    name: str = "tiny"  # the image size and every dimension come from the named config (openvla/model/configs.py)
    tokenizer: str = "mistral-v1"  # "mistral-v1" (ships in mistral-common), or a path to a tokenizer.model
    action_head: Literal["tokens", "l1"] = "tokens"  # discrete action tokens (OpenVLA) or continuous L1 head (OFT)
    parallel_decoding: bool = False  # predict all action slots in one forward pass (OFT)
    attn_implementation: str = "sdpa"  # "flash_attention_2" needs the [gpu] extra
    weights: str = ""  # optional local path with initial weights (never downloaded)
    film: bool = False  # FiLM (OFT+): the instruction modulates every ViT block (DESIGN §13)


@dataclass(frozen=True)
class BinsConfig:
    """Action tokenizer fitting (DESIGN §4)."""

    scheme: Literal["uniform", "quantile", "fast"] = "uniform"  # uniform = OpenVLA's bins; quantile = fitted per
    # dim; fast = DCT + BPE over chunks of K actions (DESIGN §15; needs model.action_head tokens, token by token)
    n_bins: int = 256  # bin edges per dimension (n_bins − 1 decode values); ids are the vocabulary's last n_bins
    normalization: Literal["bounds_q99", "bounds", "normal"] = "bounds_q99"  # must match training (bounds_q99)
    max_samples: int = 200_000  # actions read per dataset (whole training episodes, file order) to fit and measure
    uniform_mix: float = 0.1  # quantile: bins = (1 − mix)·quantile bins + mix·OpenVLA's (> 0: no zero-width bin)
    decode: Literal["mean", "quantile"] = "mean"  # quantile scheme: decode to the bin mean or its quantile value
    heldout_fraction: float = 0.1  # every 1/fraction-th episode is held out to measure a refitted tokenizer
    fast_scale: float = 10.0  # fast: DCT coefficients × scale, rounded (per-value error ≤ 0.5·√K / scale)
    fast_vocab_size: int = 1024  # fast: BPE tokens at most; they take the vocabulary's last fast_vocab_size ids
    fast_chunk: int = 0  # fast: K actions per chunk; 0 = data.chunk (what the model is trained with)

    def __post_init__(self) -> None:
        if self.fast_scale <= 0:
            raise ValueError(f"fast_scale must be positive, got {self.fast_scale}")
        if self.fast_vocab_size < self.n_bins or self.fast_chunk < 0:
            raise ValueError(f"fast_vocab_size must be at least n_bins ({self.n_bins}) and fast_chunk ≥ 0, got "
                             f"{self.fast_vocab_size} and {self.fast_chunk}")  # fmt: skip
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {self.n_bins}")
        if not 0.0 <= self.uniform_mix <= 1.0:
            raise ValueError(f"uniform_mix must lie in [0, 1], got {self.uniform_mix}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must lie in [0, 1), got {self.heldout_fraction}")


@dataclass(frozen=True)
class PretrainConfig:
    """Full VLA training with FSDP/DDP via torchrun (DESIGN §7)."""

    nproc: int = 1  # processes per node (torchrun --nproc-per-node); CPU: gloo, GPU: NCCL, one GPU per process
    strategy: Literal["fsdp", "ddp"] = "fsdp"  # fsdp: full shard (hybrid across nodes); ddp: replicas
    steps: int = 300  # optimizer steps in total (a resumed run continues up to this)
    batch_size: int = 8  # global micro-batch, split across ranks (must divide by nproc × nodes)
    grad_accumulation: int = 1  # micro-batches per optimizer step (effective batch = batch_size × this)
    lr: float = 2e-4  # AdamW peak lr; OpenVLA uses 2e-5 at full scale, a from-scratch tiny model needs more
    weight_decay: float = 0.0  # AdamW decay on matrices only (never on biases and 1-D params); OpenVLA: 0
    schedule: Literal["constant", "cosine"] = "constant"  # constant as OpenVLA; cosine decays to 0 after warmup
    warmup_steps: int = 0  # linear warmup steps (either schedule)
    grad_clip: float = 1.0  # max global grad norm (OpenVLA: 1.0); ≤ 0 disables
    freeze: Literal["none", "vision", "vision_but_last"] = "none"  # keep the vision backbone (but its last block) fixed
    mixed_precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 params + fp32 reduce on GPU, fp32 on CPU
    activation_checkpointing: bool = False  # recompute decoder-layer/ViT-block activations in backward (saves memory)
    save_every: int = 100  # checkpoint every N steps (the last step is always saved)
    keep_last: int = 2  # checkpoints kept on disk (the one `latest` names is never deleted)
    resume: Literal["auto", "never"] = "auto"  # auto: continue from runs/pretrain/latest when its config matches
    log_every: int = 1  # record metrics (MLflow, plots) every N steps
    seed: int = 7  # model init (same on every rank) and data/augmentation streams (offset per rank)
    cpu_threads: int = 1  # torch intra-op threads per process on CPU (0 = torch's default); 1 is fastest for the
    # tiny model on a shared 2-core machine (2 spinning OpenMP threads were 3-20x slower under contention)
    eval_every: int = 250  # held-out validation every N steps and at the last step (val/* curves); 0 disables
    eval_batches: int = 4  # held-out batches of batch_size frames per validation (the same frames every time)

    def __post_init__(self) -> None:
        for key in ("nproc", "steps", "batch_size", "grad_accumulation", "keep_last", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.save_every < 0 or self.warmup_steps < 0 or self.cpu_threads < 0:
            raise ValueError("save_every, warmup_steps and cpu_threads must be ≥ 0")
        if self.eval_every < 0 or self.eval_batches < 1:
            raise ValueError(f"eval_every must be ≥ 0 and eval_batches ≥ 1, got {self.eval_every} and "
                             f"{self.eval_batches}")  # fmt: skip
        if self.batch_size % self.nproc:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by nproc {self.nproc}")


@dataclass(frozen=True)
class FinetuneConfig:
    """LoRA fine-tuning with peft, merged at the end (DESIGN §8)."""

    base: str = "pretrain"  # "pretrain" = the pretrain stage's latest checkpoint, or a path to an HF directory
    mixture: str = ""  # dataset/mixture to fine-tune on; empty = data.mixture
    lora_rank: int = 32  # LoRA rank r (OpenVLA: 32)
    lora_alpha: int = 0  # 0 → min(rank, 16) as OpenVLA
    lora_dropout: float = 0.0  # dropout on the LoRA input (OpenVLA: 0)
    target_modules: str = "all-linear"  # peft target_modules: every Linear except the output head, as OpenVLA
    lr: float = 5e-4  # AdamW lr (OpenVLA: 5e-4, constant)
    lr_decay_step: int = 0  # 0: constant lr; N: lr × 0.1 from optimizer step N on (OFT's LIBERO recipe: 100000)
    steps: int = 200  # optimizer steps
    batch_size: int = 8  # global micro-batch (split across ranks when run under torchrun, DDP)
    grad_accumulation: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # max global grad norm; ≤ 0 disables
    image_augmentation: bool = True  # random crop + color jitter on the fine-tuning frames (OpenVLA: on)
    save_every: int = 100  # adapter checkpoint every N steps (resumable); the merge happens at the end
    keep_last: int = 1  # adapter checkpoints kept
    resume: Literal["auto", "never"] = "auto"  # auto: continue from runs/finetune/latest when its config matches
    log_every: int = 1  # record metrics every N steps
    seed: int = 7  # LoRA init and data/augmentation streams
    cpu_threads: int = 1  # torch intra-op threads per process on CPU (0 = torch's default), see pretrain.cpu_threads
    eval_every: int = 50  # held-out validation every N steps and at the last step (val/* curves); 0 disables
    eval_batches: int = 4  # held-out batches of batch_size frames per validation (the same frames every time)

    def __post_init__(self) -> None:
        for key in ("lora_rank", "steps", "batch_size", "grad_accumulation", "keep_last", "log_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.lora_alpha < 0 or self.save_every < 0 or self.cpu_threads < 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError("lora_alpha, save_every and cpu_threads must be ≥ 0, lora_dropout in [0, 1)")
        if self.lr_decay_step < 0:
            raise ValueError(f"lr_decay_step must be ≥ 0 (0 = constant lr), got {self.lr_decay_step}")
        if self.eval_every < 0 or self.eval_batches < 1:
            raise ValueError(f"eval_every must be ≥ 0 and eval_batches ≥ 1, got {self.eval_every} and "
                             f"{self.eval_batches}")  # fmt: skip

    @property
    def alpha(self) -> int:
        """The LoRA alpha in effect (OpenVLA: min(rank, 16))."""
        return self.lora_alpha or min(self.lora_rank, 16)


@dataclass(frozen=True)
class ExportConfig:
    """Hugging Face export (DESIGN §10)."""

    name: str = "openvla-embedded"  # directory models/<name>-hf/
    max_shard_size: str = "5GB"  # safetensors shards above this size are split (transformers' max_shard_size)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto keeps the checkpoint's; OpenVLA ships bf16
    max_artifact_mb: float = 2048.0  # log the export to MLflow as artifacts only below this size (else tag the path)


@dataclass(frozen=True)
class EvalLiberoConfig:
    """Closed-loop LIBERO evaluation (DESIGN §11)."""

    suites: list[str] = field(default_factory=lambda: ["libero_spatial"])  # OpenVLA's protocol: the four below
    task_ids: list[int] = field(default_factory=lambda: [0])  # of every suite; [] = all tasks of each suite
    episodes_per_task: int = 20
    first_init_state: int = 30  # fixed initial states [first, first + episodes) — disjoint from the demos'
    resolution: int = 128  # rendered camera size (must match the demos')
    # OpenVLA's 90%-area centre crop. None = what the model records (the crop iff it was trained with random-crop
    # augmentation), so evaluation sees what training saw; true/false force it (the official checkpoints record
    # nothing and were fine-tuned with the crop: true)
    center_crop: bool | None = None
    execution: Literal["open_loop", "ensemble"] = "ensemble"  # how an action chunk is executed
    ensemble_decay: float = 0.01  # temporal ensembling weights exp(-decay·i), i = 0 oldest prediction (ACT: 0.01)
    open_loop_steps: int = 0  # open_loop: actions executed per chunk before the next query; 0 = all K (OFT)
    videos: int = 2  # MP4s of the first N successful and the first N failed rollouts
    workers: int = 2  # simulator processes (each loads its own copy of the policy, unless batch_queries)
    # one policy in the stage's process answers all workers' queries, those waiting together in one forward (the
    # serve stage's micro-batcher on a loopback port); the win grows with workers, on a GPU above all
    batch_queries: bool = False
    blind: bool = False  # every episode gets the empty instruction: what a policy that ignores language scores
    seed: int = 0  # seeds the random policy per episode and the env
    max_steps: int = 0  # policy steps per episode; 0 = the suite's (spatial/object/goal/10/90: 220/280/300/520/400)
    cheap_rendering: bool = True  # no anti-aliasing/shadows/reflections; must equal how the training data was rendered
    unnorm_key: str = ""  # dataset key of the model's action statistics ("" = its only one)

    def __post_init__(self) -> None:
        if not self.suites:
            raise ValueError("suites: name at least one LIBERO suite (libero_spatial, libero_object, libero_goal, ...)")
        if self.episodes_per_task < 1 or self.first_init_state < 0:
            raise ValueError("episodes_per_task must be ≥ 1 and first_init_state ≥ 0")
        if self.first_init_state + self.episodes_per_task > 50:
            raise ValueError(
                f"first_init_state + episodes_per_task = {self.first_init_state + self.episodes_per_task} > 50, "
                "the number of fixed initial states of a LIBERO task"
            )


@dataclass(frozen=True)
class EvalBridgeConfig:
    """Bridge/WidowX evaluation: offline on held-out episodes, or live through a robot client."""

    mode: Literal["offline", "live"] = "offline"  # offline: held-out RLDS episodes; live: a WidowX robot client
    # offline: which episodes (the data dir is the stage's --data-dir option)
    dataset_name: str = "libero_embedded"  # registered dataset of the held-out episodes (bridge_orig for BridgeData)
    split: str = "val"  # "val" = the builder's val split, or the last 5% of train when it has none (DESIGN §6)
    max_episodes: int = 0  # evaluate at most this many episodes, in file order; 0 = the whole split
    batch_size: int = 16  # frames per batched greedy decode
    plot_episodes: int = 3  # episodes whose predicted vs true trajectories go to plots/bridge/trajectories.csv
    # both modes
    unnorm_key: str = "libero_embedded"  # statistics key actions are unnormalized with (bridge_orig on a WidowX)
    device: str = "auto"  # torch device; auto = cuda when available, else cpu
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto = bfloat16 on cuda, float32 on cpu
    # live: the robot (DESIGN §11: widowx_envs client, 5 Hz, 60 steps, no centre crop, action passed unchanged)
    instruction: str = ""  # the task told to the robot, e.g. "put the spoon on the towel"
    host: str = "127.0.0.1"  # WidowX action server (bridge_data_robot's widowx_env_service)
    port: int = 5556
    robot_image_size: int = 256  # camera image size requested from the server (Bridge's image_0 is 256 px)
    steps: int = 60  # control steps of the live episode
    control_hz: float = 5.0  # control rate; the loop sleeps out the rest of each 1/control_hz period
    execution: Literal["open_loop", "ensemble"] = "ensemble"  # live, chunked models: how a chunk is executed
    ensemble_decay: float = 0.01  # live ensembling weights exp(-decay·i), i = 0 the oldest prediction
    open_loop_steps: int = 0  # live open_loop: actions executed per chunk before the next query; 0 = all K

    def __post_init__(self) -> None:
        if self.max_episodes < 0 or self.batch_size < 1 or self.plot_episodes < 0:
            raise ValueError("max_episodes and plot_episodes must be ≥ 0 and batch_size ≥ 1")
        if self.steps < 1 or self.control_hz <= 0:
            raise ValueError(f"steps must be ≥ 1 and control_hz > 0, got {self.steps} and {self.control_hz}")


@dataclass(frozen=True)
class ServeConfig:
    """The `/act` policy server (DESIGN §11)."""

    host: str = "127.0.0.1"  # bind address; loopback unless told otherwise (the server has no authentication)
    port: int = 8000  # TCP port of `openvla serve`
    max_image_bytes: int = 16 * 1024 * 1024  # reject larger images (decoded H·W·3 bytes) with HTTP 413
    max_instruction_chars: int = 1000  # longer instructions are refused (422): the prompt must fit llm_max_length
    max_batch: int = 8  # requests batched together into one model call when they arrive at once
    batch_wait_ms: float = 2.0  # how long the first request of a batch waits for others (added latency when alone)
    max_queue: int = 256  # requests waiting for the model beyond this get HTTP 503 (retry later) instead of piling up
    execution: Literal["chunk", "open_loop", "ensemble"] = "chunk"  # chunk = answer the model's whole (K, D) chunk;
    # open_loop / ensemble = the server executes chunks per client session and answers one (D,) action per request
    ensemble_decay: float = 0.01  # ensemble: weights exp(-decay·i), i = 0 the oldest prediction (ACT: 0.01)
    open_loop_steps: int = 0  # open_loop: actions executed per chunk before the next query; 0 = all K (OFT)
    max_sessions: int = 64  # open_loop / ensemble: executors kept (least recently used dropped beyond this)

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {self.max_queue}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        if self.max_image_bytes < 1 or self.max_instruction_chars < 1:
            raise ValueError("max_image_bytes and max_instruction_chars must be positive")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")


@dataclass(frozen=True)
class Params:
    """The whole ``params.yaml``."""

    project: ProjectConfig = field(default_factory=ProjectConfig)
    demos: DemosConfig = field(default_factory=DemosConfig)
    convert: ConvertConfig = field(default_factory=ConvertConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    bins: BinsConfig = field(default_factory=BinsConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval_libero: EvalLiberoConfig = field(default_factory=EvalLiberoConfig)
    eval_bridge: EvalBridgeConfig = field(default_factory=EvalBridgeConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)


# ----------------------------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it (ints accepted where floats are expected)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            if option is type(None) and value is None:
                return None
            try:
                return _coerce(value, option, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list ({_type_name(tp)}), got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = args if args else (Any, Any)
        return {_coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported annotation {tp!r}")  # a bug in this module, not in params


def _build(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of keys for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(names)}"
        raise ConfigError(f"{where}.{key}: unknown key{hint}" if where else f"{key}: unknown section{hint}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ValueError as err:  # __post_init__ cross-field checks
        raise ConfigError(f"{where}: {err}") from err


def params_from_dict(data: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a parsed ``params.yaml`` mapping and return the typed ``Params``."""
    try:
        return _build(Params, data, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate ``params.yaml``. Missing sections and keys take the defaults above."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameters file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params_from_dict(data, str(path))


def load_section(path: str | Path, section: str) -> Any:
    """One section of ``params.yaml`` (the whole file is validated so a typo anywhere is caught early)."""
    params = load_params(path)
    key = section.replace("-", "_")
    if not hasattr(params, key):
        raise ConfigError(f"{path}: no section {section!r}")
    return getattr(params, key)


def to_flat_dict(config: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dataclass to ``{"section.key": value}`` (for MLflow params)."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            flat.update(to_flat_dict(value, key + "."))
        else:
            flat[key] = value
    return flat
