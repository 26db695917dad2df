"""Original M2-BERT files <-> bertforge run folders (the tensor and config maps live in models/convert/m2_original).

A run folder written here is what ``main.py`` leaves behind, so the rest of bertforge reads it unchanged:
``config.yaml`` (a training config whose ``model:`` block rebuilds the model), ``tokenizer/`` and
``checkpoints/latest-rank0.pt`` (a link to ``ep0-ba0-rank0.pt``, ``{'state': {'model': ...}}`` in our
Composer model's names). Heads of the original that our family has no place for (a retrieval model's pooler,
a classifier) travel in the checkpoint under ``m2_original.aside`` and are written back on export, with the
original config.json's other keys (``m2_original.config``, e.g. the pooler's settings).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import torch
from omegaconf import OmegaConf

from bertforge.errors import UserError
from bertforge.models.convert.m2_original import (
    config_from_original,
    config_to_original,
    normalize_keys,
    state_from_original,
    state_to_original,
)
from bertforge.models.m2.config import M2BertConfig

CHECKPOINT = "ep0-ba0-rank0.pt"
COMPOSER_PREFIX = "model."


def read_original_config(path: str | None, weights: str) -> tuple[dict[str, Any], str]:
    """The original's model config: a config.json, or a training YAML's ``model.model_config``; default: the
    config.json beside ``weights``."""
    if path is None:
        folder = weights if os.path.isdir(weights) else os.path.dirname(os.path.abspath(weights))
        path = os.path.join(folder, "config.json")
        if not os.path.isfile(path):
            raise UserError(f"--config: no config.json beside {weights}; give the checkpoint's config.json or YAML")
    if not os.path.isfile(path):
        raise UserError(f"--config: {path} not found")
    try:
        if path.endswith((".yaml", ".yml")):
            raw = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
            raw = (raw.get("model") or {}).get("model_config", raw) if isinstance(raw.get("model"), dict) else raw
        else:
            with open(path) as f:
                raw = json.load(f)
    except Exception as err:
        raise UserError(f"--config: {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"--config: {path} is not a mapping of config keys")
    return raw, path


def _run_config(out: str, cfg: M2BertConfig) -> dict[str, Any]:
    """A training config (main.py's schema) whose model block rebuilds the imported model."""
    return {
        "run_name": os.path.basename(os.path.normpath(out)), "run_dir": out,
        "max_seq_len": cfg.max_position_embeddings, "tokenizer": {"name": None},
        "model": {"name": "m2_bert", "model_config": dataclasses.asdict(cfg)},
        "train_loader": {"dataset": {"local": "data/mds", "split": "train"}, "mlm_probability": 0.3},
        "max_duration": "1ep",
    }


def import_m2_original(weights: str, out: str, config: str | None = None,
                       tokenizer: str = "bert-base-uncased") -> str:
    """Convert the original's checkpoint into the run folder ``out``; returns a report of what was done."""
    from bertforge import registry
    from bertforge.checkpoints import read_model_weights
    from bertforge.data.tokenizer import load_tokenizer

    state = read_model_weights(weights)
    raw, config_path = read_original_config(config, weights)
    embeddings = normalize_keys(state).get("bert.embeddings.word_embeddings.weight")
    cfg = config_from_original(raw, embeddings.shape[0] if embeddings is not None else None, config_path)
    ours, report = state_from_original(state, cfg, weights)
    tok = load_tokenizer(tokenizer, "--tokenizer")
    tok.model_max_length = cfg.max_position_embeddings
    torch.manual_seed(0)  # a head the checkpoint lacks starts the same way every time
    model = registry.models.build({"name": "m2_bert", "model_config": dataclasses.asdict(cfg)}, "model", tok)
    missing, unexpected = model.load_state_dict({COMPOSER_PREFIX + k: v for k, v in ours.items()}, strict=False)
    fresh = {COMPOSER_PREFIX + k.split(" ")[0] for k in report.fresh}
    if unexpected or set(missing) - fresh:  # the maps and the model disagree: a bug, not a user error
        raise RuntimeError(f"m2 import: missing {sorted(set(missing) - fresh)}, unexpected {sorted(unexpected)}")
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    OmegaConf.save(OmegaConf.create(_run_config(out, cfg)), os.path.join(out, "config.yaml"))
    tok.save_pretrained(os.path.join(out, "tokenizer"))
    extras = {"aside": report.aside, "fresh": report.fresh, "config": raw, "source": os.path.abspath(weights)}
    torch.save({"state": {"model": model.state_dict()}, "rng": None, "m2_original": extras},
               os.path.join(out, "checkpoints", CHECKPOINT))
    link = os.path.join(out, "checkpoints", "latest-rank0.pt")
    if os.path.islink(link) or os.path.exists(link):
        os.remove(link)
    os.symlink(CHECKPOINT, link)
    lines = [f"{out}: {len(report.mapped)} tensors mapped, {len(report.checked)} recomputed or tied copies checked"]
    if report.aside:
        lines.append(f"kept aside (no m2_bert counterpart; written back by to-m2-original): {sorted(report.aside)}")
    if report.fresh:
        lines.append(f"not in the checkpoint, left at their initial values: {report.fresh}")
    return "\n".join(lines)


def export_m2_original(run: str, out: str, checkpoint: str | None = None) -> str:
    """Write a ``m2_bert`` run's checkpoint as the original's ``pytorch_model.bin`` + ``config.json`` in ``out``."""
    from bertforge.checkpoints import checkpoint_of_run, load_whole
    from bertforge.config import load_config
    from bertforge.config.validate import from_dict

    run_cfg = load_config(os.path.join(run, "config.yaml"))
    if run_cfg.model.get("name") != "m2_bert":
        raise UserError(f"{run}: model '{run_cfg.model.get('name')}' is not m2_bert; only M2 runs export to M2")
    whole = load_whole(checkpoint_of_run(run, checkpoint))
    state = whole["state"]["model"]
    ours = {k[len(COMPOSER_PREFIX):]: v for k, v in state.items() if k.startswith(COMPOSER_PREFIX)}
    cfg = from_dict(M2BertConfig, dict(run_cfg.model.get("model_config") or {}), "model.model_config")
    if cfg.vocab_size is None:
        cfg.vocab_size = ours["model.embeddings.tok_embeddings.weight"].shape[0]
    extras = whole.get("m2_original") or {}
    original = state_to_original(ours, cfg, extras.get("aside"), drop_head=bool(extras.get("fresh")))
    os.makedirs(out, exist_ok=True)
    torch.save(original, os.path.join(out, "pytorch_model.bin"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({**(extras.get("config") or {}), **config_to_original(cfg)}, f, indent=2)
    return out
