"""Runs INSIDE the side environment (transformers 4.40.1, tokenizers 0.19.1): no openvla import here.

Reads a JSON request on stdin, writes a JSON answer on stdout:
  {"load": [dir, ...], "texts": [str, ...], "write": {"spm": path, "out": dir} | null, "config_dir": dir | null}
The "write" step runs first, so "load" may name its output directory.
→ {"versions": {...}, "ids": {dir: {"AutoTokenizer": [[...], ...], "LlamaTokenizerFast": ..., "LlamaTokenizer": ...}},
   "info": {dir: {...}}, "config": {...}}
"""

from __future__ import annotations

import json
import sys


def describe(tok):
    return {
        "class": type(tok).__name__,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "len": len(tok),
        "vocab_size": tok.vocab_size,
        "space_id": tok.convert_tokens_to_ids("▁"),
        "padding_side": tok.padding_side,
        "add_bos_token": tok.add_bos_token,
        "add_eos_token": tok.add_eos_token,
    }


def main() -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer, LlamaTokenizer, LlamaTokenizerFast

    request = json.load(sys.stdin)
    answer = {"versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__}}
    texts = request["texts"]
    write = request.get("write")
    if write:  # the other direction: tokenizer files as OpenVLA's own stack writes them
        import os
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(write["spm"], os.path.join(tmp, "tokenizer.model"))
            tok = LlamaTokenizerFast.from_pretrained(tmp, legacy=True, model_max_length=2048, padding_side="right")
            tok.add_special_tokens({"pad_token": "<PAD>"})
            tok.save_pretrained(write["out"])  # tokenizer.json + tokenizer.model + tokenizer_config.json
        answer["written"] = {"ids": tok(texts).input_ids, "info": describe(tok)}

    answer["ids"], answer["info"] = {}, {}
    for directory in request.get("load", []):
        ids, info = {}, {}
        for cls in (AutoTokenizer, LlamaTokenizerFast, LlamaTokenizer):
            tok = cls.from_pretrained(directory)
            ids[cls.__name__] = tok(texts).input_ids
            info[cls.__name__] = describe(tok)
            if cls is AutoTokenizer:  # decoding of the fast class, which OpenVLA's processor uses
                info[cls.__name__]["decoded"] = [tok.decode(x, skip_special_tokens=True) for x in ids[cls.__name__]]
        answer["ids"][directory], answer["info"][directory] = ids, info

    config_dir = request.get("config_dir")
    if config_dir:  # config.json / preprocessor_config.json of an export, parsed as transformers 4.40 does
        from transformers import LlamaConfig, PretrainedConfig
        from transformers.image_processing_utils import ImageProcessingMixin

        config_dict, _ = PretrainedConfig.get_config_dict(config_dir)
        text = LlamaConfig(**config_dict["text_config"])
        processor_dict, _ = ImageProcessingMixin.get_image_processor_dict(config_dir)
        generic = PretrainedConfig.from_pretrained(config_dir)
        answer["config"] = {
            "model_type": config_dict["model_type"],
            "text_vocab_size": text.vocab_size,
            "text_hidden_size": text.hidden_size,
            "text_num_hidden_layers": text.num_hidden_layers,
            "text_rope_theta": getattr(text, "rope_theta", None),
            "pad_token_id": generic.pad_token_id,
            "n_action_bins": generic.n_action_bins,
            "norm_stats_keys": sorted(generic.norm_stats),
            "image_processor_type": processor_dict["image_processor_type"],
            "input_sizes": processor_dict["input_sizes"],
            "means": processor_dict["means"],
        }
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
