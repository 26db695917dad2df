"""Where an export starts: a bertforge run folder (``config.yaml``, ``tokenizer/``, ``checkpoints/``) rebuilt into
its model, or a Hugging Face / sentence-transformers folder (or Hub name) used as it is."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from bertforge.errors import UserError

EXTRA = "pip install -e .[retrieval]"


def require(module: str, package: str) -> ModuleType:
    """Import optional ``module``; missing, fail with one line naming ``package`` and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{package} is not installed; install the retrieval extra: {EXTRA}") from None


def is_run(path: str) -> bool:
    """Whether ``path`` is a bertforge run folder (it holds ``config.yaml``)."""
    return os.path.isfile(os.path.join(path, "config.yaml"))


def load_run(run_dir: str, checkpoint: str | None = None) -> Any:
    """The run's Composer model, rebuilt from its ``config.yaml`` and tokenizer (``tokenizer.name``, else the run's
    ``tokenizer/``), with the weights of ``checkpoint`` (default: the one ``checkpoints/latest-rank0.pt`` points
    to; a sharded checkpoint's folder is consolidated), in eval mode."""
    from bertforge.checkpoints import checkpoint_of_run, load_whole
    from bertforge.config import load_config
    from bertforge.data.tokenizer import load_tokenizer
    from bertforge.train import build_model

    if not is_run(run_dir):
        raise UserError(f"{run_dir}: not a bertforge run folder (no config.yaml)")
    cfg = load_config(os.path.join(run_dir, "config.yaml"))
    checkpoint = checkpoint_of_run(run_dir, checkpoint)
    model = build_model(cfg, load_tokenizer(cfg.tokenizer.name or os.path.join(run_dir, "tokenizer")))
    model.load_state_dict(load_whole(checkpoint)["state"]["model"])
    return model.eval()


def export_run(run_dir: str, out: str, checkpoint: str | None = None) -> str:
    """Write the run's model as a transformers folder (:func:`bertforge.models.export.export_hf`); return it."""
    from bertforge.models.export import export_hf

    return export_hf(load_run(run_dir, checkpoint), out)


def _looks_like_hub_name(source: str) -> bool:
    parts = source.split("/")
    return len(parts) <= 2 and all(parts) and not source.startswith((".", "~"))


@contextmanager
def hf_folder(source: str) -> Iterator[str]:
    """A transformers folder (or Hub name) for ``source``: a run is exported to a temporary folder, removed on exit;
    a sentence-transformers folder gives its transformer module's folder; a Hugging Face folder is itself."""
    if is_run(source):
        with tempfile.TemporaryDirectory(prefix="bertforge-export-") as tmp:
            yield export_run(source, os.path.join(tmp, "hf"))
        return
    if os.path.isdir(source):
        if not os.path.isfile(os.path.join(source, "config.json")) and not _st_transformer_dir(source):
            raise UserError(f"{source}: neither a bertforge run (config.yaml) nor a Hugging Face folder (config.json)")
        yield _st_transformer_dir(source) or source
        return
    if os.path.exists(source) or not _looks_like_hub_name(source):
        raise UserError(f"{source}: no such folder; give a bertforge run folder (config.yaml, checkpoints/) or a "
                        "Hugging Face / sentence-transformers folder")
    yield source  # a Hub name: transformers downloads it (or says why not)


def st_json(source: str, name: str) -> Any:
    """The JSON file ``name`` of a sentence-transformers folder or Hub repo ``source`` (None: it has no such file)."""
    path: str | None = os.path.join(source, name)
    if not os.path.isdir(source):
        if not _looks_like_hub_name(source) or importlib.util.find_spec("sentence_transformers") is None:
            return None
        from sentence_transformers.util import load_file_path

        path = load_file_path(source, name)  # None when the repo lacks it
    if path is None or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def st_modules(source: str) -> list[dict] | None:
    """The entries of a sentence-transformers (or PyLate) folder's or Hub repo's ``modules.json``, each with ``kind``
    added (the class name, e.g. ``Pooling``); None when ``source`` is not such a model."""
    entries = st_json(source, "modules.json")
    return None if entries is None else [{**e, "kind": str(e.get("type", "")).rsplit(".", 1)[-1]} for e in entries]


def _st_transformer_dir(folder: str) -> str | None:
    """The folder of a sentence-transformers folder's Transformer module (None: no modules.json lists one)."""
    path = next((e.get("path", "") for e in st_modules(folder) or [] if e["kind"] == "Transformer"), None)
    return None if path is None else os.path.join(folder, path)


def is_bertforge_folder(folder: str) -> bool:
    """Whether the transformers folder runs bertforge's modeling code (``model_type: bertforge``); importing
    :mod:`bertforge.export.remote` registers those classes, so it loads without ``trust_remote_code`` here."""
    config = os.path.join(folder, "config.json")
    if not os.path.isfile(config):
        return False
    with open(config) as f:
        return json.load(f).get("model_type") == "bertforge"
