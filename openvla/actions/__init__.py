"""openvla.actions: normalization with dataset statistics and action tokenizers (DESIGN §4, §5, §15)."""

from openvla.actions.fast import FastActionTokenizer
from openvla.actions.normalization import NORMALIZATION_KINDS, NormalizationError, normalize, unnormalize
from openvla.actions.tokenizer import (
    ActionTokenizer,
    QuantileActionTokenizer,
    load_action_tokenizer,
    resolve_action_tokenizer,
    save_action_tokenizer,
)

__all__ = [
    "NORMALIZATION_KINDS",
    "ActionTokenizer",
    "FastActionTokenizer",
    "NormalizationError",
    "QuantileActionTokenizer",
    "load_action_tokenizer",
    "normalize",
    "resolve_action_tokenizer",
    "save_action_tokenizer",
    "unnormalize",
]
