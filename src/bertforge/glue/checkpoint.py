"""Starting points: load encoder weights (read by ``checkpoints.read_model_weights``) strictly.

Nothing here knows a model family. A classifier from the registry names its new task head
(``head_prefixes``, never loaded) and optional parts (``optional_prefixes``, loaded when present);
every other weight must come from the checkpoint with the right shape, and every mismatch is
reported by name.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import torch

from bertforge.checkpoints import checkpoint_of_run
from bertforge.errors import UserError


def run_checkpoint(path: str | None) -> str | None:
    """A run folder (``config.yaml`` + ``checkpoints/latest-rank0.pt``) -> its latest checkpoint; None for anything
    else (a checkpoint file, a Hugging Face folder)."""
    if not path or not os.path.isdir(path) or not os.path.isfile(os.path.join(path, "config.yaml")):
        return None
    try:
        return checkpoint_of_run(path, instead="name a checkpoint file")
    except UserError as err:
        raise UserError(f"starting_checkpoint: {err}") from None


def align_prefix(source: dict[str, torch.Tensor], target_keys: list[str]) -> dict[str, torch.Tensor]:
    """Prepend the prefix that maps most source keys onto target keys ('bert.x' -> 'model.bert.x')."""
    targets = set(target_keys)
    if sum(k in targets for k in source) * 2 >= len(source):
        return source
    votes: Counter[str] = Counter()
    for key in list(source)[:50]:
        for target in target_keys:
            if target.endswith("." + key):
                votes[target[: -len(key)]] += 1
    if not votes:
        return source
    prefix = votes.most_common(1)[0][0]
    return {prefix + k: v for k, v in source.items()}


@dataclass
class LoadReport:
    """What a load did: keys loaded, kept fresh (head / absent optional) and ignored from the checkpoint."""

    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def load_encoder(model: torch.nn.Module, source: dict[str, torch.Tensor], origin: str) -> LoadReport:
    """Load ``source`` into ``model`` strictly apart from the head; raise UserError naming any mismatch."""
    head = tuple(getattr(model, "head_prefixes", ()))
    optional = tuple(getattr(model, "optional_prefixes", ()))
    target = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()} - set(target)  # non-persistent: never in a checkpoint
    source = align_prefix(source, list(target))
    encoder_tops = {k.split(".")[0] + "." + k.split(".")[1] for k in target if not k.startswith(head) and "." in k}
    report, state, problems = LoadReport(), {}, []
    for key, value in target.items():
        if key.startswith(head) or (key.startswith(optional) and key not in source):
            report.fresh.append(key)
        elif key not in source:
            problems.append(f"missing {key}")
        elif tuple(source[key].shape) != tuple(value.shape):
            problems.append(f"shape of {key}: checkpoint {tuple(source[key].shape)}, model {tuple(value.shape)}")
        else:
            state[key] = source[key]
            report.loaded.append(key)
    for key in source:
        if key in target or key in buffers:
            continue
        if ".".join(key.split(".")[:2]) in encoder_tops and not key.startswith(head):
            problems.append(f"unexpected {key}")
        else:
            report.ignored.append(key)  # another head (MLM, an earlier task's classifier)
    if problems:
        raise UserError(f"starting_checkpoint: {origin} does not fit the model: {_names(problems)}")
    model.load_state_dict(state, strict=False)
    return report
