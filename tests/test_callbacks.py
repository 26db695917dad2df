"""Batch-size warmup fractions and slicing; packing refused for models that cannot unpad."""

from __future__ import annotations

import subprocess
import sys
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


def test_hf_export_of_alibi_flexbert_is_accepted_before_training(sample_mds, tmp_path):
    from bertforge.callbacks.builtin import HuggingFaceExport
    from bertforge.config import load_config
    from bertforge.models.export import export_refusal
    from bertforge.train import build_trainer
    from tests.conftest import REPO, tiny_overrides

    overrides = tiny_overrides(sample_mds, tmp_path / "run", **{"model.model_config.position_encoding": "alibi"})
    cfg = load_config(REPO / "yamls" / "quickstart" / "flexbert-tiny.yaml", overrides)
    trainer = build_trainer(cfg)  # ALiBi has no transformers class: hf_export writes bertforge's own modeling code
    assert any(isinstance(cb, HuggingFaceExport) for cb in trainer.state.callbacks)
    assert export_refusal(trainer.state.model) is None  # the NSP-head refusal: tests/models/test_nsp_export.py


def _lrs_per_batch(callbacks: list) -> list[float]:
    """Learning rate each of 10 batches trained with (warmup 2 batches, then linear decay to 0)."""
    from composer import Trainer
    from composer.core import Callback
    from composer.models import ComposerModel
    from composer.optim import LinearWithWarmupScheduler

    class Linear(ComposerModel):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def forward(self, batch):
            return self.layer(batch[0])

        def loss(self, outputs, batch):
            return torch.nn.functional.mse_loss(outputs, batch[1])

    class Record(Callback):
        def __init__(self):
            self.lrs = []

        def before_forward(self, state, logger):
            self.lrs.append(state.optimizers[0].param_groups[0]["lr"])

    data = torch.utils.data.TensorDataset(torch.randn(40, 2), torch.randn(40, 1))
    model, record = Linear(), Record()
    Trainer(model=model, train_dataloader=torch.utils.data.DataLoader(data, batch_size=4), max_duration="10ba",
            optimizers=torch.optim.SGD(model.parameters(), lr=1.0), device="cpu", progress_bar=False,
            schedulers=LinearWithWarmupScheduler(t_warmup="2ba", alpha_f=0.0), callbacks=[record, *callbacks]).fit()
    return record.lrs


def test_schedule_alignment_trains_batch_i_with_the_schedule_at_i():
    from bertforge.callbacks.schedule_alignment import ScheduleAlignment

    expected = [0.0, 0.5] + [1.0 - (i - 2) / 8 for i in range(2, 10)]  # what transformers' Trainer uses
    assert _lrs_per_batch([ScheduleAlignment()]) == pytest.approx(expected)
    lagged = _lrs_per_batch([])  # Composer alone: one batch late
    assert lagged == pytest.approx([0.0] + expected[:-1])


def test_callbacks_import_nothing_from_the_benchmark():
    from tests.conftest import REPO

    code = ("import sys, bertforge.callbacks.throughput, bertforge.callbacks.builtin; "
            "bad = [m for m in sys.modules if m.startswith('bertforge.bench')]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
