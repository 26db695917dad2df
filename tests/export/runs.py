"""Tiny bertforge run folders of every family (config.yaml, tokenizer/, checkpoints/latest-rank0.pt), as training
leaves them, and our own model's outputs to compare exports with."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import BertTokenizerFast

from tests.conftest import REPO, TRANSFORMERS_5
from tests.models.test_nsp_head import SPECIALS

WORDS = 40
# family -> (quickstart YAML, model_config overrides making it tiny)
RUNS = {
    "hf_bert": ("hf-bert-tiny.yaml", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                          intermediate_size=40, max_position_embeddings=64)),
    "flexbert": ("flexbert-tiny.yaml", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                            intermediate_size=40, local_attention_window=6)),
    "flexbert_alibi": ("flexbert-tiny.yaml", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                  intermediate_size=40, local_attention_window=6,
                                                  position_encoding="alibi")),
    "m2_bert": ("m2-bert-tiny.yaml", dict(hidden_size=32, num_hidden_layers=2, intermediate_size=48,
                                          max_position_embeddings=64, filter_length=64, filter_order=16)),
}
TEXTS = ["w1 w2 w3", "w4", "w5 w6 w7 w8 w9 w10 w11 w12 w13 w14", "w20 w21 w22 w23 w24"]


def from_pretrained(auto_class, folder, trust_remote_code: bool):
    """``auto_class.from_pretrained(folder)``; with ``trust_remote_code`` the folder's own ``auto_map`` code runs.

    transformers 5 prefers a registered class to a folder's ``auto_map`` code even with ``trust_remote_code``
    (auto_factory's ``explicit_local_code``), and importing bertforge registers its classes: there the folder's
    code is loaded as transformers loads it where bertforge is not imported.
    """
    if not (trust_remote_code and TRANSFORMERS_5):
        return auto_class.from_pretrained(folder, trust_remote_code=trust_remote_code)
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    auto_map = json.loads((Path(folder) / "config.json").read_text()).get("auto_map", {})
    if auto_class.__name__ not in auto_map:  # a transformers class (hf_bert, BERT-form FlexBERT)
        return auto_class.from_pretrained(folder)
    return get_class_from_dynamic_module(auto_map[auto_class.__name__], str(folder)).from_pretrained(folder)


def make_run(root: Path, kind: str) -> Path:
    """A run folder of ``kind`` (a key of :data:`RUNS`) under ``root``, with random (seeded, non-trivial) weights."""
    from omegaconf import OmegaConf

    from bertforge.config import load_config
    from bertforge.train import build_model

    run = root / kind
    (run / "checkpoints").mkdir(parents=True)
    vocab = root / f"{kind}-vocab.txt"
    vocab.write_text("\n".join(SPECIALS + [f"w{i}" for i in range(WORDS)]) + "\n")
    BertTokenizerFast(str(vocab)).save_pretrained(run / "tokenizer")  # positional: vocab_file in 4.x, vocab in 5
    yaml, model_config = RUNS[kind]
    overrides = [f"run_dir={run}", f"tokenizer.name={run / 'tokenizer'}", "max_seq_len=64"]
    overrides += [f"model.model_config.{k}={v}" for k, v in model_config.items()]
    cfg = load_config(REPO / "yamls" / "quickstart" / yaml, overrides)
    OmegaConf.save(OmegaConf.create(asdict(cfg)), run / "config.yaml")
    torch.manual_seed(0)
    model = build_model(cfg, BertTokenizerFast.from_pretrained(run / "tokenizer"))
    with torch.no_grad():  # norms and biases start at 1 / 0: move them so that a dropped tensor would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    torch.save({"state": {"model": model.state_dict()}}, run / "checkpoints" / "ep0-ba1-rank0.pt")
    os.symlink("ep0-ba1-rank0.pt", run / "checkpoints" / "latest-rank0.pt")
    return run


def encoder_hidden(composer_model, batch: dict) -> torch.Tensor:
    """Our model's final hidden states ``(B, L, H)`` for a tokenizer ``batch``."""
    module = composer_model.model
    with torch.no_grad():
        if hasattr(module, "base_model"):  # the transformers family
            return module.base_model(**batch).last_hidden_state
        return module.model(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))


def input_embeddings(composer_model) -> torch.nn.Embedding:
    """Our model's token embedding table."""
    module = composer_model.model
    return module.get_input_embeddings() if hasattr(module, "base_model") else module.model.embeddings.tok_embeddings


def sentence_embeddings(composer_model, tokenizer, texts: list[str], pooling: str, normalize: bool) -> torch.Tensor:
    """Reference embeddings ``(N, H)``: each text encoded alone (no padding), mean over its tokens or its first
    token, L2-normalised if asked."""
    rows = []
    for text in texts:
        hidden = encoder_hidden(composer_model, dict(tokenizer([text], return_tensors="pt")))[0]  # (L, H)
        rows.append(hidden.mean(0) if pooling == "mean" else hidden[0])
    out = torch.stack(rows)
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out
