"""What a loaded export needs beyond ``from_pretrained``: the fitted action tokenizer.

A model trained with a non-uniform action tokenizer (``bins.scheme: quantile``) must decode with the same bins.
Training writes it to ``<checkpoint>/action_tokenizer/``, the export copies it, and ``attach_action_tokenizer``
sets it on a model loaded from such a directory (without it the model decodes with OpenVLA's uniform bins, which
is right for uniform-bin models and for official checkpoints, which have no such folder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

ACTION_TOKENIZER_DIR = "action_tokenizer"  # the folder name training writes (openvla/train/vla.py)


def attach_action_tokenizer(model: Any, directory: str | Path) -> Any:
    """Set ``model.action_tokenizer`` from ``directory/action_tokenizer`` when present; return the tokenizer used."""
    from openvla.actions.tokenizer import resolve_action_tokenizer

    folder = Path(directory) / ACTION_TOKENIZER_DIR
    tokenizer = resolve_action_tokenizer(folder, model.config.base_vocab_size, model.config.n_action_bins)
    model.action_tokenizer = tokenizer
    if folder.is_dir():
        log.info("action tokenizer from %s: %r", folder, tokenizer)
    return tokenizer
