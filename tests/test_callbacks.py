"""Batch-size warmup fractions and slicing; packing refused for models that cannot unpad."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from composer.core import Time, Timestamp

from bertforge.callbacks.batch_warmup import BatchSizeWarmup


def _state(batch: int, rows: int = 16) -> SimpleNamespace:
    batch_data = {"input_ids": torch.zeros(rows, 4), "labels": torch.ones(rows, 4)}
    return SimpleNamespace(max_duration=Time.from_timestring("100ba"), timestamp=Timestamp(batch=batch),
                           dataloader_len=None, batch=batch_data)


def test_batch_size_warmup_grows_linearly_then_stops():
    warmup = BatchSizeWarmup(start_fraction=0.25, t_warmup="0.1dur")
    assert warmup.fraction(_state(0)) == 0.25
    assert warmup.fraction(_state(5)) == pytest.approx(0.625)
    assert warmup.fraction(_state(10)) == 1.0
    state = _state(0)
    warmup.after_dataloader(state, SimpleNamespace(log_metrics=lambda m: None))
    assert state.batch["input_ids"].shape[0] == 4 and state.batch["labels"].shape[0] == 4


def test_packing_with_a_padded_model_fails_before_training(sample_mds, tmp_path):
    from bertforge.config import load_config
    from bertforge.errors import ConfigError
    from bertforge.train import build_trainer
    from tests.conftest import QUICKSTART_YAML, tiny_overrides

    cfg = load_config(QUICKSTART_YAML, tiny_overrides(sample_mds, tmp_path / "run", **{"train_loader.packing": True}))
    with pytest.raises(ConfigError, match="train_loader.packing: model 'hf_bert' cannot attend within packed"):
        build_trainer(cfg)


def test_hf_export_of_a_model_without_hf_format_fails_before_training(sample_mds, tmp_path):
    from bertforge.config import load_config
    from bertforge.errors import ConfigError
    from bertforge.train import build_trainer
    from tests.conftest import REPO, tiny_overrides

    overrides = tiny_overrides(sample_mds, tmp_path / "run", **{"model.model_config.position_encoding": "alibi"})
    cfg = load_config(REPO / "yamls" / "quickstart" / "flexbert-tiny.yaml", overrides)
    with pytest.raises(ConfigError, match=r"callbacks\[2\]: hf_export: .* no Hugging Face equivalent"):
        build_trainer(cfg)
