"""``Policy``: the one object between a camera frame and an action, for evaluation, serving and robots.

A ``Policy`` holds a model, its processor and its ``ModelTransform``. Every caller — eval-libero, eval-bridge
(offline and live), the ``/act`` server, a user's robot loop — goes through it, so what the model reads at inference
is what training fed it (DESIGN §14):

    policy = Policy.from_pretrained("models/openvla-embedded-hf")
    action = policy.act({"image": frame, "instruction": "put the bowl on the plate", "proprio": state})
    action = policy.act({"images": {"primary": frame, "wrist": wrist_frame}, "instruction": ..., "proprio": state})

* Several cameras (``cameras``, the model's ``camera_roles``): every frame goes through the same transform and
  processor and the cameras are stacked on channels in the model's order; a sample is a frame (one camera), a
  mapping role → frame or a list of frames in camera order.
* ``predict(images, instructions, proprios)`` is the batched core: raw frames → transform → processor → one model
  call → ``Prediction`` (action tokens, normalized values, unnormalized actions, and the chunk for models with
  OpenVLA-OFT options). Plain OpenVLA models (K = 1, token head, no proprio) decode token by token exactly as
  ``predict_action``; chunking models predict K actions per frame, of which the first is the current step.
* ``act(observation, session=…)`` answers one observation. With ``execution="chunk"`` it returns what the model
  predicts ((D,) for K = 1, (K, D) otherwise); with ``open_loop`` / ``ensemble`` it executes the chunks of each
  session (``openvla.policy.chunking``) and returns one (D,) action, querying the model only when the executor
  asks. ``reset(session)`` starts a new episode.

Action tokens in a ``Prediction``: with the token head the greedy ids the model generated; with the L1 head the
action tokenizer's encoding of the regressed values (so "token accuracy" is bin agreement).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openvla.policy.chunking import EXECUTIONS, make_executor
from openvla.policy.sessions import DEFAULT_SESSION, SessionStore
from openvla.policy.transform import ModelTransform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """One batch of predictions, each (B, D); chunking models also keep the whole (B, K, D) chunk.

    For a chunk, ``tokens`` / ``normalized`` / ``actions`` are its first action (the current step).
    """

    tokens: np.ndarray  # int64 action token ids (greedy; the L1 head: the tokenizer's encoding of its values)
    normalized: np.ndarray  # float32 values in the model's normalized space
    actions: np.ndarray  # float32 unnormalized with the unnorm_key's statistics (what predict_action returns)
    chunk: np.ndarray | None = None  # float32 (B, K, D) normalized chunk; None for plain OpenVLA models
    chunk_actions: np.ndarray | None = None  # float32 (B, K, D) the chunk unnormalized; None for OpenVLA models

    def per_request(self) -> list[np.ndarray]:
        """One float32 array per row: the (K, D) chunk for chunking models with K > 1, else the (D,) action."""
        if self.chunk_actions is not None and self.chunk_actions.shape[1] > 1:
            return [np.asarray(c, dtype=np.float32) for c in self.chunk_actions]
        return [np.asarray(a, dtype=np.float32) for a in self.actions]


class Policy:
    """A VLA + its processor + its observation transform (see the module docstring)."""

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        unnorm_key: str | None = None,
        center_crop: bool | None = None,
        execution: str = "chunk",
        ensemble_decay: float = 0.01,
        max_sessions: int = 64,
        open_loop_steps: int = 0,
    ) -> None:
        self.model = model
        self.processor = processor
        self.image_processor = getattr(processor, "image_processor", processor)
        self.tokenizer = processor.tokenizer
        self.transform = ModelTransform.from_config(model.config, center_crop)
        from openvla.tf_import import limit_tensorflow_threads

        limit_tensorflow_threads(1)  # the transform's one TF op per frame must not fight torch for the cores
        self.unnorm_key = unnorm_key or None
        self.max_sessions = max_sessions
        self.set_execution(execution, ensemble_decay, open_loop_steps)
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.queries = 0  # model calls made by act() (callers time them: eval-libero's query latency)
        if self.unnorm_key is not None:
            self.action_stats(self.unnorm_key)  # a wrong unnorm_key fails now, not at the first robot step

    def set_execution(self, execution: str, ensemble_decay: float = 0.01, open_loop_steps: int = 0) -> None:
        """How ``act`` executes chunks from now on ("chunk" | "open_loop" | "ensemble"); every session restarts.

        ``open_loop_steps`` (open_loop): actions of each chunk executed before the next query, 0 = all of them
        (OpenVLA-OFT's ``num_open_loop_steps``)."""
        if execution not in EXECUTIONS:
            raise ValueError(f"execution must be one of {', '.join(EXECUTIONS)}, got {execution!r}")
        self.execution = execution
        self.sessions = (
            SessionStore(execution, ensemble_decay, self.max_sessions, open_loop_steps)
            if execution != "chunk"
            else None
        )

    # --- loading ------------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        *,
        device: str = "auto",
        dtype: str = "auto",
        tokenizer: str = "mistral-v1",
        **kwargs: Any,
    ) -> Policy:
        """Load an exported or official-format directory (or a bare ``save_pretrained`` checkpoint, whose text
        tokenizer then comes from ``tokenizer``); ``kwargs`` go to the constructor."""
        return cls(*load_model_and_processor(model_dir, device, dtype, tokenizer), **kwargs)

    # --- what the model is ----------------------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def image_size(self) -> int:
        return self.transform.image_size

    @property
    def unnorm_keys(self) -> list[str]:
        """The datasets whose statistics the model can unnormalize with."""
        return list(self.config.norm_stats or {})

    @property
    def action_tokenizer(self) -> Any:
        return self.model.action_tokenizer

    @property
    def cameras(self) -> list[str]:
        """The camera roles the model reads, in order (["primary"] for OpenVLA; OFT LIBERO: primary, wrist)."""
        return list(getattr(self.config, "camera_roles", None) or ["primary"])

    @property
    def chunk_size(self) -> int:
        """K, the actions predicted per query (1 for OpenVLA)."""
        return int(getattr(self.config, "action_chunk", 1) or 1)

    @property
    def action_chunk(self) -> int:  # the name the server's /health reports
        return self.chunk_size

    @property
    def action_head(self) -> str:
        """ "tokens" (discrete action tokens, OpenVLA) or "l1" (continuous regression, OFT)."""
        return str(getattr(self.config, "action_head", "tokens") or "tokens")

    @property
    def uses_proprio(self) -> bool:
        return bool(getattr(self.config, "use_proprio", False))

    @property
    def proprio_dim(self) -> int | None:
        """The state size when the model reads the robot state, else None."""
        return int(self.config.proprio_dim) if self.uses_proprio else None

    @property
    def predicts_chunks(self) -> bool:
        """True for a model with OpenVLA-OFT options (K > 1, parallel decoding, L1 head, proprio)."""
        return (
            self.chunk_size > 1
            or bool(getattr(self.config, "parallel_decoding", False))
            or self.action_head != "tokens"
            or self.uses_proprio
        )

    def action_stats(self, unnorm_key: str | None = None) -> dict:
        """The ``action`` statistics predictions are unnormalized with (``UnnormKeyError`` lists the keys)."""
        return self.model.get_action_stats(unnorm_key or None)

    def describe(self) -> dict[str, Any]:
        """What a client needs to know (``/health``): the transform, K, the proprio size, the datasets."""
        return {
            "transform": self.transform.as_dict(),
            "cameras": self.cameras,
            "action_chunk": self.chunk_size,
            "action_head": self.action_head,
            "proprio_dim": self.proprio_dim,
            "unnorm_keys": self.unnorm_keys,
        }

    # --- inputs -----------------------------------------------------------------------------------------------------
    def camera_frames(self, sample: Any) -> list[Any]:
        """One sample's raw frames in the model's camera order (``cameras``).

        ``sample`` is a frame (one-camera models), a mapping camera role → frame, or a sequence of N frames in
        camera order.
        """
        cameras = self.cameras
        if isinstance(sample, Mapping):
            missing = [c for c in cameras if c not in sample]
            if missing:
                raise ValueError(
                    f"Policy: this model reads cameras {cameras}; no frame for {missing} (got {sorted(sample)})"
                )
            return [sample[c] for c in cameras]
        if isinstance(sample, list | tuple):
            if len(sample) != len(cameras):
                raise ValueError(
                    f"Policy: {len(sample)} frames for a model that reads {len(cameras)} cameras {cameras}"
                )
            return list(sample)
        if len(cameras) != 1:
            raise ValueError(
                f"Policy: this model reads {len(cameras)} cameras {cameras}; pass a mapping role → frame (e.g. "
                f"{{'primary': ..., 'wrist': ...}}) or a list of frames in that order"
            )
        return [sample]

    def pixel_values(self, images: Sequence[Any]) -> Any:
        """Raw camera frames (one sample per element, see ``camera_frames``) → [B, 3·n·N, S, S] on the model's
        device: every frame through the transform, then the processor, the cameras stacked on channels."""
        import torch

        tensors = [
            torch.cat([self.image_processor.apply_transform(self.transform(f)) for f in self.camera_frames(sample)])
            for sample in images
        ]
        return torch.stack(tensors).to(self.device, self.dtype)

    def inputs(self, images: Sequence[Any], instructions: Sequence[str]) -> dict[str, Any]:
        """Right-padded ``input_ids`` / ``attention_mask`` of OpenVLA's prompts and the ``pixel_values``."""
        import torch

        from openvla.model.prompts import build_action_prompt

        if len(images) != len(instructions):
            raise ValueError(f"Policy: {len(images)} images but {len(instructions)} instructions")
        prompts = [build_action_prompt(text, self.config.llm_backbone_id) for text in instructions]
        rows = [self.tokenizer(p, add_special_tokens=True).input_ids for p in prompts]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.config.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, : len(row)] = 1
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
            "pixel_values": self.pixel_values(images),
        }

    def normalized_proprio(self, proprios: Sequence[Any], unnorm_key: str | None) -> Any:
        """Raw states (one per frame) → the normalized [B, P] tensor the model reads."""
        rows = [np.asarray(p, dtype=np.float64).reshape(-1) for p in proprios]
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"Policy: proprio states of different sizes {sorted({len(r) for r in rows})}")
        if self.proprio_dim is not None and len(rows[0]) != self.proprio_dim:
            raise ValueError(f"Policy: proprio has {len(rows[0])} values, the model expects {self.proprio_dim}")
        return self.model.normalize_proprio(np.stack(rows), unnorm_key).to(self.device)

    # --- prediction ---------------------------------------------------------------------------------------------
    def predict(
        self,
        images: Sequence[Any],
        instructions: Sequence[str],
        proprios: Sequence[Any] | None = None,
        unnorm_key: str | None = None,
    ) -> Prediction:
        """Batched prediction for raw frames; ``proprios`` (raw states, one per frame) for a model with
        ``use_proprio`` (ignored otherwise); ``unnorm_key`` defaults to the policy's."""
        import torch

        from openvla.actions import unnormalize

        unnorm_key = unnorm_key or self.unnorm_key
        stats = self.action_stats(unnorm_key)
        dim = len(stats["q01"])
        kind = getattr(self.config, "action_normalization", "bounds_q99")
        inputs = self.inputs(images, instructions)
        ids, pixels, mask = inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"]
        fast = getattr(self.action_tokenizer, "scheme", None) == "fast"  # FAST: a chunk per query, even for K = 1
        if not self.predicts_chunks and not fast:  # plain OpenVLA: token by token, exactly predict_action's path
            with torch.inference_mode():
                tokens = self.model.generate_action_tokens(ids, pixels, mask, num_tokens=dim, do_sample=False)
            tokens = tokens.cpu().numpy().astype(np.int64)
            normalized = np.asarray(self.action_tokenizer.decode(tokens), dtype=np.float32)
            actions = np.asarray(unnormalize(normalized, stats, kind=kind), dtype=np.float32)
            return Prediction(tokens=tokens, normalized=normalized, actions=actions)

        if dim != int(self.config.action_dim):
            raise ValueError(
                f"norm_stats[{unnorm_key!r}] actions have {dim} dimensions, the model's action_dim is "
                f"{self.config.action_dim}"
            )
        proprio = None
        if self.uses_proprio:
            if proprios is None or any(p is None for p in proprios):
                raise ValueError("this model reads the robot state (use_proprio): pass one raw proprio per frame")
            if len(proprios) != len(images):
                raise ValueError(f"Policy: {len(images)} images but {len(proprios)} proprio states")
            proprio = self.normalized_proprio(proprios, unnorm_key)
        batch, k = len(images), self.chunk_size
        with torch.inference_mode():
            if self.action_head == "tokens" and not fast:
                all_tokens = self.model.predict_chunk_tokens(ids, pixels, mask, proprio, action_dim=dim)
                chunk = np.asarray(self.action_tokenizer.decode(all_tokens), dtype=np.float32).reshape(batch, k, dim)
                first_tokens = all_tokens[:, 0]
            else:  # L1 head (regressed values) or FAST (decoded chunks); tokens = the per-value bins of them
                chunk = self.model.predict_normalized_chunk(ids, pixels, mask, proprio=proprio, action_dim=dim)
                chunk = np.asarray(chunk, dtype=np.float32).reshape(batch, k, dim)
                first_tokens = np.asarray(self.action_tokenizer.encode(chunk[:, 0]), dtype=np.int64)
        chunk_actions = np.asarray(unnormalize(chunk, stats, kind=kind), dtype=np.float32)
        return Prediction(
            tokens=first_tokens,
            normalized=chunk[:, 0].copy(),
            actions=chunk_actions[:, 0].copy(),
            chunk=chunk,
            chunk_actions=chunk_actions,
        )

    def predict_batch(
        self,
        images: Sequence[Any],
        instructions: Sequence[str],
        unnorm_key: str | None,
        proprios: Sequence[Any] | None = None,
    ) -> list[np.ndarray]:
        """One float32 array per request, (D,) or (K, D): what the server's micro-batcher calls."""
        return self.predict(images, instructions, proprios, unnorm_key).per_request()

    # --- acting -------------------------------------------------------------------------------------------------
    def observation_frames(self, observation: Mapping[str, Any]) -> dict[str, Any]:
        """The camera frames of an observation by role: ``images`` {role: frame}, plus ``image`` (the model's first
        camera, usually primary) and ``wrist_image`` (the wrist camera) as shorthands."""
        frames = dict(observation.get("images") or {})
        if observation.get("image") is not None:
            frames.setdefault(self.cameras[0], observation["image"])
        if observation.get("wrist_image") is not None:
            frames.setdefault("wrist", observation["wrist_image"])
        return frames

    def act(self, observation: Mapping[str, Any], *, session: str = DEFAULT_SESSION) -> np.ndarray:
        """One observation ``{"image", "wrist_image"? | "images"?, "instruction", "proprio"?, "unnorm_key"?}`` →
        a float32 action.

        ``execution="chunk"``: the model's (D,) action or (K, D) chunk. ``open_loop`` / ``ensemble``: one (D,)
        action from the session's chunk executor, which a change of instruction or unnorm_key resets.
        """
        instruction = str(observation["instruction"])
        unnorm_key = observation.get("unnorm_key") or self.unnorm_key
        proprio = observation.get("proprio")
        frames = self.camera_frames(self.observation_frames(observation))

        def query() -> np.ndarray:
            proprios = None if proprio is None else [proprio]
            self.queries += 1
            return self.predict([frames], [instruction], proprios, unnorm_key).per_request()[0]

        if self.sessions is None:
            return query()
        executor = self.sessions.begin(session, (instruction, unnorm_key))
        if executor.wants_query():
            executor.push(np.atleast_2d(query()))
        return np.asarray(executor.pop(), dtype=np.float32)

    def will_query(self, session: str = DEFAULT_SESSION) -> bool:
        """Whether the next ``act`` of ``session`` (same instruction) runs the model, i.e. reads its observation."""
        return self.sessions is None or self.sessions.will_query(session)

    def reset(self, session: str = DEFAULT_SESSION) -> None:
        """Start a new episode for ``session`` (its queued actions and past predictions are dropped)."""
        if self.sessions is not None:
            self.sessions.reset(session)


def load_model_and_processor(
    model_dir: str | Path, device: str = "auto", dtype: str = "auto", tokenizer: str = "mistral-v1"
) -> tuple[Any, Any]:
    """``(model, processor)`` of a model directory, on its device in eval mode, with its action tokenizer.

    An exported or official-format directory loads through transformers' Auto classes; a bare ``save_pretrained``
    checkpoint (no processor files) gets the image processor from its config and the text tokenizer ``tokenizer``.
    """
    from openvla.hf.loading import attach_action_tokenizer, load_exported, resolve_device_dtype

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; pass an exported model directory (`openvla export`)")
    if (model_dir / "preprocessor_config.json").is_file() and (model_dir / "tokenizer_config.json").is_file():
        return load_exported(model_dir, device, dtype)
    from openvla.hf.processing import PrismaticProcessor
    from openvla.model.image_processing import PrismaticImageProcessor
    from openvla.model.text_tokenizer import load_text_tokenizer
    from openvla.model.vla import OpenVLAForActionPrediction

    torch_device, torch_dtype = resolve_device_dtype(device, dtype)
    model = OpenVLAForActionPrediction.from_pretrained(str(model_dir), dtype=torch_dtype)
    processor = PrismaticProcessor(
        image_processor=PrismaticImageProcessor.from_vla_config(model.config),
        tokenizer=load_text_tokenizer(tokenizer),
    )
    attach_action_tokenizer(model, model_dir)
    log.info("loaded %s (bare checkpoint, tokenizer %s) on %s, %s", model_dir, tokenizer, torch_device, torch_dtype)
    return model.to(torch_device).eval(), processor


__all__ = ["Policy", "Prediction", "load_model_and_processor", "make_executor"]
