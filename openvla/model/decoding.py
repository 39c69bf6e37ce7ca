"""Action decoding of the VLA: prompts → action tokens or continuous actions → unnormalized actions.

``predict_action`` follows OpenVLA (append "▁" when missing, greedily generate ``action_dim`` tokens, decode them to
bin centres, unnormalize with ``norm_stats[unnorm_key]["action"]``) and, unlike OpenVLA, accepts a batch: prompts of
different lengths are left-aligned internally (``_left_aligned_prompt``) and decoded with the KV cache, giving the
same tokens as one prompt at a time. OpenVLA-OFT's options decode here too: K·D action slots in one forward
(``parallel_forward``), read by the token head or the L1 head, with an optional proprio token.

FAST action tokens (a ``FastActionTokenizer`` attached to the model, tokens head, token by token): each prompt
generates until ``</s>`` or the longest valid sequence (K·D tokens) + 1 (``generate_until_eos``), and the ids
before ``</s>`` decode (BPE → coefficients → inverse DCT) to the normalized (K, D) chunk; an invalid sequence is
repaired by the tokenizer (logged and counted in ``action_tokenizer.repair_counts()``), never raised.

Inference callers use ``openvla.policy.Policy``, which adds the observation transform and chunk execution.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from openvla.model.action_heads import additive_mask, parallel_attention_mask
from openvla.model.outputs import IGNORE_INDEX, OpenVLAOutput

logger = logging.getLogger(__name__)


class ActionDecodingMixin:
    """The decoding methods of ``OpenVLAForActionPrediction`` (a mixin over the model's modules and config)."""

    @property
    def action_tokenizer(self) -> Any:
        """The uniform ``ActionTokenizer`` over the unpadded vocabulary (settable, e.g. to a quantile one)."""
        if self._action_tokenizer is None:
            from openvla.actions import ActionTokenizer

            self._action_tokenizer = ActionTokenizer(self.config.base_vocab_size, self.config.n_action_bins)
        return self._action_tokenizer

    @action_tokenizer.setter
    def action_tokenizer(self, value: Any) -> None:
        self._action_tokenizer = value

    def _left_aligned_prompt(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        proprio: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[BOS] + patches (+ proprio) + prompt + "▁" per row, left-aligned: (embeds, mask, position_ids).

        Prompts may be padded on either side (``attention_mask`` marks the real tokens, which must be contiguous
        and start with BOS). Each row gets "▁" appended when it does not end with it, is rebuilt with the image
        patches, and is rolled so that its last token is at the end; positions count from each row's first real
        token. Generation and parallel decoding both start from this, in training and inference alike.
        """
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if pixel_values.dim() == 3:
            pixel_values = pixel_values[None]
        device = self.get_input_embeddings().weight.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(device).bool()
        space = self.config.space_token_id
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            row = ids[mask]
            if row.numel() == 0:
                raise ValueError("a prompt has no tokens (attention_mask all zero)")
            if int(row[-1]) != space:
                row = torch.cat([row, row.new_tensor([space])])
            rows.append(row)
        # Right-pad (BOS first, as _multimodal_inputs expects), insert the patches, then roll every row left-aligned.
        length = max(len(r) for r in rows)
        ids = input_ids.new_full((len(rows), length), self.config.pad_token_id)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        proprio = proprio.to(device) if proprio is not None else None
        embeds, mask, _, _ = self._multimodal_inputs(ids, mask, pixel_values.to(device), proprio=proprio)
        total = mask.shape[1]
        n_pad = total - mask.sum(dim=1, keepdim=True)  # (B, 1)
        src = (torch.arange(total, device=device)[None] - n_pad) % total  # position t reads t − n_pad
        embeds = torch.gather(embeds, 1, src[..., None].expand_as(embeds))
        mask = torch.gather(mask, 1, src)
        position_ids = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return embeds, mask, position_ids

    def parallel_forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        action_labels: torch.Tensor | None = None,
        actions: torch.Tensor | None = None,
    ) -> OpenVLAOutput:
        """All K·D action slots in one forward (OpenVLA-OFT's parallel decoding).

        Returns ``logits`` [B, K·D, V] of the slots (tokens head) or ``actions`` [B, K, D] (L1 head, normalized);
        ``loss`` is the cross-entropy against ``action_labels`` [B, K·D] or the mean L1 against ``actions``.
        """
        if not self.config.parallel_decoding:
            raise ValueError("parallel_forward needs a model with parallel_decoding=True")
        if self.config.text_config._attn_implementation not in (None, "sdpa", "eager"):
            raise ValueError(
                f"parallel decoding needs a custom attention mask: use attn_implementation 'sdpa' or 'eager', "
                f"not {self.config.text_config._attn_implementation!r}"
            )
        embeds, mask, position_ids = self._left_aligned_prompt(input_ids, pixel_values, attention_mask, proprio)
        bsz = embeds.shape[0]
        n_slots = self.config.num_action_slots
        embeds = torch.cat([embeds, self.action_queries(bsz).to(embeds.dtype)], dim=1)
        mask = torch.cat([mask, mask.new_ones(bsz, n_slots)], dim=1)
        slot_positions = position_ids[:, -1:] + torch.arange(1, n_slots + 1, device=embeds.device)[None]
        position_ids = torch.cat([position_ids, slot_positions], dim=1)
        mask4d = additive_mask(parallel_attention_mask(mask, n_slots), embeds.dtype)
        hidden = self.get_decoder()(inputs_embeds=embeds, attention_mask=mask4d, position_ids=position_ids)
        slot_hidden = hidden.last_hidden_state[:, -n_slots:]
        if self.config.action_head == "l1":
            predicted = self.l1_head(slot_hidden.to(self.l1_head.fc_in.weight.dtype))
            loss = None
            if actions is not None:
                target = actions.to(predicted.device, predicted.dtype).reshape(predicted.shape)
                loss = nn.functional.l1_loss(predicted.float(), target.float())
            return OpenVLAOutput(loss=loss, actions=predicted)
        logits = self.get_output_embeddings()(slot_hidden)
        loss = None
        if action_labels is not None:
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1).float(), action_labels.to(logits.device).flatten(), ignore_index=IGNORE_INDEX
            )
        return OpenVLAOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def generate_action_tokens(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        num_tokens: int = 7,
        do_sample: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Generate ``num_tokens`` ids after each prompt (+ "▁") with the KV cache: [B, num_tokens].

        A batch gives the same tokens as one prompt at a time (rows are left-aligned, ``_left_aligned_prompt``).
        """
        embeds, mask, position_ids = self._left_aligned_prompt(input_ids, pixel_values, attention_mask, proprio)
        lm = self.language_model
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
        generated = []
        for step in range(num_tokens):
            logits = out.logits[:, -1].float()
            generated.append(_pick(logits, do_sample, temperature, generator))
            if step == num_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            position_ids = position_ids[:, -1:] + 1
            out = lm(
                input_ids=generated[-1][:, None],
                attention_mask=mask,
                position_ids=position_ids,
                cache=out.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return torch.stack(generated, dim=1)

    @property
    def uses_fast_tokens(self) -> bool:
        """True when the attached action tokenizer is FAST (variable-length sequences ending with ``</s>``)."""
        return getattr(self.action_tokenizer, "scheme", None) == "fast"

    @torch.no_grad()
    def generate_until_eos(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        max_tokens: int,
        eos_token_id: int | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        proprio: torch.Tensor | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Generate after each prompt (+ "▁") until every row has produced ``eos_token_id`` or ``max_tokens`` ids.

        Returns each row's ids before its first EOS (int64) and a boolean array: True where the row ended with EOS
        (False: cut at ``max_tokens``). Rows are left-aligned as in ``generate_action_tokens``, so a batch gives the
        same ids as one prompt at a time.
        """
        eos = int(self.config.text_config.eos_token_id if eos_token_id is None else eos_token_id)
        embeds, mask, position_ids = self._left_aligned_prompt(input_ids, pixel_values, attention_mask, proprio)
        lm = self.language_model
        out = lm(inputs_embeds=embeds, attention_mask=mask, position_ids=position_ids, use_cache=True, logits_to_keep=1)
        bsz = embeds.shape[0]
        finished = torch.zeros(bsz, dtype=torch.bool, device=embeds.device)
        generated = []
        for step in range(max_tokens):
            token = _pick(out.logits[:, -1].float(), do_sample, temperature, generator)
            generated.append(token)
            finished |= token == eos
            if bool(finished.all()) or step == max_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(bsz, 1)], dim=1)
            position_ids = position_ids[:, -1:] + 1
            out = lm(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=position_ids,
                cache=out.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        ids = torch.stack(generated, dim=1).cpu().numpy().astype(np.int64)  # [B, steps]
        rows, ended = [], np.zeros(bsz, dtype=bool)
        for i, row in enumerate(ids):
            stops = np.flatnonzero(row == eos)
            ended[i] = len(stops) > 0
            rows.append(row[: stops[0]] if ended[i] else row)
        return rows, ended

    @torch.no_grad()
    def predict_fast_tokens(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
    ) -> list[np.ndarray]:
        """Each prompt's FAST ids (before ``</s>``), generated with at most K·D + 1 steps."""
        if self.config.action_head != "tokens" or self.config.parallel_decoding:
            raise ValueError("FAST action tokens need the tokens head decoded token by token (parallel_decoding off)")
        tokenizer = self.action_tokenizer
        if tokenizer.chunk != int(self.config.action_chunk):
            raise ValueError(f"the FAST tokenizer encodes chunks of {tokenizer.chunk}, the model predicts "
                             f"{self.config.action_chunk}")  # fmt: skip
        rows, ended = self.generate_until_eos(
            input_ids, pixel_values, attention_mask, max_tokens=tokenizer.max_tokens + 1, do_sample=do_sample,
            temperature=temperature, proprio=proprio,
        )  # fmt: skip
        if not ended.all():
            logger.warning("FAST: %d of %d sequences reached %d tokens without </s> (decoded as cut)",
                           int((~ended).sum()), len(ended), tokenizer.max_tokens + 1)  # fmt: skip
        return rows

    @torch.no_grad()
    def predict_chunk_tokens(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        action_dim: int | None = None,
    ) -> np.ndarray:
        """Action token ids [B, K, D] of the tokens head: the slots' picks (parallel) or K·D generated tokens.

        ``action_dim`` overrides the config's D for token-by-token decoding (OpenVLA reads it from the statistics).
        """
        if self.config.action_head != "tokens":
            raise ValueError(f"predict_chunk_tokens needs the tokens head, this model has {self.config.action_head!r}")
        if self.uses_fast_tokens:
            raise ValueError("FAST sequences have no (K, D) token layout: use predict_fast_tokens")
        K = int(self.config.action_chunk)
        D = int(action_dim) if action_dim and not self.config.parallel_decoding else int(self.config.action_dim)
        if self.config.parallel_decoding:
            logits = self.parallel_forward(input_ids, pixel_values, attention_mask, proprio=proprio).logits
            tokens = _pick(logits.flatten(0, 1).float(), do_sample, temperature, None).reshape(len(logits), K * D)
        else:
            tokens = self.generate_action_tokens(
                input_ids, pixel_values, attention_mask, num_tokens=K * D, do_sample=do_sample,
                temperature=temperature, proprio=proprio,
            )  # fmt: skip
        return tokens.cpu().numpy().astype(np.int64).reshape(len(tokens), K, D)

    @torch.no_grad()
    def predict_normalized_chunk(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        action_dim: int | None = None,
    ) -> np.ndarray:
        """Normalized actions [B, K, D]: the L1 head's regression (clamped to [−1, 1]) or the decoded token chunk."""
        if self.config.action_head == "l1":
            out = self.parallel_forward(input_ids, pixel_values, attention_mask, proprio=proprio)
            return out.actions.float().clamp(-1.0, 1.0).cpu().numpy()
        if self.uses_fast_tokens:
            if action_dim and int(action_dim) != self.action_tokenizer.action_dim:
                raise ValueError(f"the FAST tokenizer encodes {self.action_tokenizer.action_dim}-D actions, the "
                                 f"statistics have {action_dim}")  # fmt: skip
            rows = self.predict_fast_tokens(
                input_ids, pixel_values, attention_mask, proprio, do_sample=do_sample, temperature=temperature
            )
            return self.action_tokenizer.decode_chunks(rows)
        ids = self.predict_chunk_tokens(
            input_ids, pixel_values, attention_mask, proprio, do_sample=do_sample, temperature=temperature,
            action_dim=action_dim,
        )  # fmt: skip
        # a fitted (quantile) tokenizer decodes per action dimension, the last axis of [B, K, D]
        return np.asarray(self.action_tokenizer.decode(ids), dtype=np.float32)

    @torch.no_grad()
    def predict_action(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        unnorm_key: str | None = None,
        do_sample: bool = False,
        temperature: float = 1.0,
        proprio: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Unnormalized actions.

        With ``action_chunk`` K = 1 (OpenVLA): (action_dim,) for one prompt, (B, action_dim) for B > 1. With
        K > 1: a chunk (K, action_dim) for one prompt, (B, K, action_dim) for B > 1. ``proprio`` is the raw state
        ((P,) or [B, P]) for a model with ``use_proprio``; it is normalized with the dataset's proprio statistics.
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("predict_action needs input_ids and pixel_values (from the processor)")
        if kwargs:
            logger.debug("predict_action ignores %s", sorted(kwargs))
        stats = self.get_action_stats(unnorm_key)
        action_dim = len(stats["q01"])
        if action_dim != self.config.action_dim and (self.config.action_chunk > 1 or self.config.parallel_decoding):
            raise ValueError(f"norm_stats actions have {action_dim} dimensions, the model's action_dim is "
                             f"{self.config.action_dim}")  # fmt: skip
        normalized_proprio = None
        if self.config.use_proprio:
            if proprio is None:
                raise ValueError("this model has use_proprio=True: predict_action needs proprio (the raw state)")
            normalized_proprio = self.normalize_proprio(proprio, unnorm_key)
        # OpenVLA (one step, token by token): the statistics decide how many tokens to generate.
        chunk = self.predict_normalized_chunk(
            input_ids, pixel_values, attention_mask, normalized_proprio, do_sample=do_sample, temperature=temperature,
            action_dim=action_dim,
        )  # fmt: skip
        from openvla.actions import unnormalize

        actions = np.asarray(unnormalize(chunk, stats, kind=self.config.action_normalization), dtype=np.float32)
        if self.config.action_chunk == 1:
            actions = actions[:, 0]
        return actions[0] if actions.shape[0] == 1 else actions


def _pick(logits: torch.Tensor, do_sample: bool, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy (argmax) or sampled token ids from logits [N, V]."""
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / max(temperature, 1e-5), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
