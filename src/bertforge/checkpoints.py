"""Checkpoint folder hygiene for autoresume after a hard kill.

Composer writes a checkpoint straight to its final name and only then moves the
``latest-rank{r}.pt`` symlink. A run killed in between leaves a partial file newer than
``latest``; Composer would refuse to resume because that file "may conflict with a future
checkpoint". We move such files aside, so the rerun resumes from the last complete checkpoint.

Autoresume itself is resolved here too (:func:`resolve_resume`): Composer's own search writes and removes
one signal file in ``save_folder`` from each node's local rank 0, so nodes sharing the folder (NFS, Lustre)
crash removing a file another node already removed (composer PR 2363). We read the ``latest`` symlink on
rank 0, share the answer, and hand Composer a plain ``load_path``: the same load it would have done.

A sharded (FSDP) checkpoint is a folder of per-rank ``.distcp`` files; :func:`load_whole` reads it, or a plain
checkpoint file, as one whole Composer state in a single process (for export, inspection or a weights-only start).
:func:`read_model_weights` is the one reader of a model's tensors from any file a user may name: a Composer
checkpoint (whole or sharded), a finetuned job's ``model.pt``, or a Hugging Face folder or weights file.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, NamedTuple

import torch
from composer.utils import dist

from bertforge.errors import UserError

CHECKPOINT_NAME = re.compile(r"^ep(\d+)-ba(\d+)-rank(\d+)\.pt$")
SHARDED_NAME = re.compile(r"^ep(\d+)-ba(\d+)$")  # a sharded checkpoint's folder; rank 0's latest points to it
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in the order transformers prefers them
SHARDED_MARKER = ".metadata"  # torch.distributed.checkpoint writes it into every sharded checkpoint's folder


def _batch_of(name: str) -> int | None:
    match = CHECKPOINT_NAME.match(name) or SHARDED_NAME.match(name)
    return int(match.group(2)) if match else None


def discard_incomplete_checkpoints(folder: str) -> list[str]:
    """Rename checkpoints (files, or sharded checkpoints' folders) newer than their rank's ``latest`` symlink to
    ``*.incomplete``; return them."""
    if not os.path.isdir(folder):
        return []
    moved = []
    names = os.listdir(folder)
    for name in names:
        batch = _batch_of(name)
        if batch is None:
            continue
        whole = CHECKPOINT_NAME.match(name)
        rank = whole.group(3) if whole else "0"
        latest = os.path.join(folder, f"latest-rank{rank}.pt")
        target = os.readlink(latest) if os.path.islink(latest) else None
        latest_batch = _batch_of(os.path.basename(target)) if target else None
        if latest_batch is None or batch > latest_batch:
            path = os.path.join(folder, name)
            os.replace(path, path + ".incomplete")
            moved.append(path)
    return moved


class ResumePlan(NamedTuple):
    """What the Trainer is given: where to load from, whether weights only, and Composer's own ``autoresume``;
    ``resumed``: the run's own checkpoint was found (load it whole: drop any ``load_ignore_keys``)."""

    load_path: str | None
    load_weights_only: bool
    autoresume: bool
    resumed: bool = False


def latest_checkpoint(folder: str) -> str | None:
    """The checkpoint ``folder/latest-rank0.pt`` points to (a file, or a sharded checkpoint's folder), or None."""
    link = os.path.join(folder, "latest-rank0.pt")
    if not os.path.islink(link):
        return None
    target = os.path.join(folder, os.readlink(link))
    return target if os.path.exists(target) else None


def run_dir_of(checkpoint: str) -> str:
    """The run folder of a main.py checkpoint: ``{run_dir}/checkpoints/x.pt`` -> ``{run_dir}``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(checkpoint)))


def checkpoint_of_run(run_dir: str, checkpoint: str | None = None, instead: str = "pass --checkpoint") -> str:
    """``checkpoint``, else the one ``run_dir/checkpoints/latest-rank0.pt`` points to; one line when there is none
    (ending with ``instead``: what else the user can do)."""
    found = checkpoint or latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    if found is None:
        raise UserError(f"{run_dir}/checkpoints has no latest-rank0.pt; train the run first or {instead}")
    return found


def resolve_resume(save_folder: str | None, autoresume: bool, load_path: str | None,
                   load_weights_only: bool) -> ResumePlan:
    """Resolve autoresume before the Trainer: the run's newest complete checkpoint when ``save_folder`` has one
    (loaded in full, as Composer's autoresume does), else ``load_path`` as configured. Collective: every rank calls it.

    A remote ``save_folder`` (``s3://...``) is left to Composer's own autoresume, which downloads from it.
    """
    if not autoresume or not save_folder:
        return ResumePlan(load_path, load_weights_only, False)
    if "://" in save_folder:
        return ResumePlan(load_path, load_weights_only, True)
    found = [latest_checkpoint(save_folder) if dist.get_global_rank() == 0 else None]
    dist.broadcast_object_list(found, src=0)
    path = found[0]
    if path is None:
        return ResumePlan(load_path, load_weights_only, False)
    blind = [rank for rank, seen in enumerate(dist.all_gather_object(os.path.exists(path))) if not seen]
    if blind:
        raise UserError(f"save_folder: rank {blind[0]} cannot see {path}, which rank 0 resumes from; put save_folder "
                        "on a filesystem every node mounts at the same path (NFS, Lustre) or on a remote (s3://...)")
    return ResumePlan(path, False, False, True)


def load_whole(checkpoint: str) -> dict[str, Any]:
    """A Composer checkpoint as one dict (``{'state': {'model': ..., 'timestamp': ...}, 'rng': ...}``) on CPU:
    a file as saved, or a sharded checkpoint's folder consolidated from all its ranks' shards."""
    if not os.path.exists(checkpoint):
        raise UserError(f"checkpoint not found: {checkpoint}; give a checkpoint file or a sharded checkpoint's folder")
    if not os.path.isdir(checkpoint):
        return torch.load(checkpoint, map_location="cpu", weights_only=False)
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    with tempfile.TemporaryDirectory() as tmp:
        whole = os.path.join(tmp, "whole.pt")
        dcp_to_torch_save(checkpoint, whole)
        return torch.load(whole, map_location="cpu", weights_only=False)


def _weights_file(path: str, where: str) -> str:
    """The file to read for ``path``: itself, or a Hugging Face folder's weights file."""
    if os.path.isdir(path):
        for name in HF_WEIGHT_FILES:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise UserError(f"{where}: folder has none of {', '.join(HF_WEIGHT_FILES)} and is no sharded checkpoint")
    if not os.path.isfile(path):
        raise UserError(f"{where}: not found; give a Composer checkpoint, a Hugging Face folder or its weights file")
    return path


def read_model_weights(path: str, key: str | None = None, weights_only: bool = False) -> dict[str, torch.Tensor]:
    """A model's tensors from a Composer checkpoint (``state['state']['model']``; a file or a sharded folder), a
    finetuned job's ``model.pt``, or a Hugging Face folder / ``pytorch_model.bin`` / ``.safetensors``.

    Every problem is one :class:`UserError` line starting ``<key>: <path>:`` (``<path>:`` without ``key``).
    ``weights_only`` refuses pickled objects beyond tensors (Composer's own checkpoints hold some).
    """
    where = f"{key}: {path}" if key else path
    try:
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, SHARDED_MARKER)):
            state: Any = load_whole(path)
        else:
            file = _weights_file(path, where)
            if file.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(file)
            state = torch.load(file, map_location="cpu", weights_only=weights_only)
    except UserError:
        raise
    except Exception as err:  # truncated, not a torch file, pickled objects refused by weights_only
        raise UserError(f"{where}: cannot be read as a checkpoint ({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state"), dict):
        state = state["state"].get("model")
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{where}: holds no model weights (neither a Composer checkpoint's state['state']['model'] "
                        "nor a Hugging Face state dict)")
    return state
