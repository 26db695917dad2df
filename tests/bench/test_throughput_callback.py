"""Training throughput/MFU: models supply ``flops_per_batch`` (the benchmark's count) to Composer's SpeedMonitor,
and ``throughput_mfu`` is SpeedMonitor with the benchmark's peak FLOP/s table."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from composer.callbacks import SpeedMonitor
from composer.core import Precision
from composer.devices import DeviceCPU
from composer.models import ComposerModel
from transformers import BertConfig, BertForMaskedLM

from bertforge import registry
from bertforge.bench.inputs import make_batch
from bertforge.callbacks.throughput import ThroughputMFU
from bertforge.models.flops import FlopsPerBatch, batch_flops, document_lengths


class _TinyMLM(FlopsPerBatch, ComposerModel):
    """A ComposerModel as ours are built: the mixin first, the transformers model as ``.model``."""

    def __init__(self):
        super().__init__()
        self.model = BertForMaskedLM(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, intermediate_size=64,
                                                max_position_embeddings=64))

    def forward(self, batch):
        return self.model(**batch)

    def loss(self, outputs, batch):
        return outputs.loss


def test_flops_per_batch_is_the_benchmark_count_of_a_train_step():
    model = _TinyMLM()
    batch = make_batch([5, 17, 9, 32], 32, vocab_size=100, pad_token_id=0, device=torch.device("cpu"),
                       with_labels=True)
    expected = batch_flops(model, batch.lengths, train=True)  # what benchmark_fwd.py counts for this batch
    assert expected > 0 and model.flops_per_batch(batch.tensors) == expected  # same arithmetic: exact
    # padding never counts: the same sequences padded to 64 cost the same
    wider = make_batch([5, 17, 9, 32], 64, 100, 0, torch.device("cpu"), True, pad_to="max")
    assert wider.padded_tokens > batch.padded_tokens and model.flops_per_batch(wider.tensors) == expected


def test_packed_rows_count_each_document_at_its_own_length():
    mask = torch.tensor([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]])  # row 0 packs documents of 3 and 2 tokens
    assert document_lengths(mask) == [3, 2, 6]
    model = _TinyMLM()
    assert model.flops_per_batch({"attention_mask": mask}) == batch_flops(model, [3, 2, 6], train=True)
    assert model.flops_per_batch({"attention_mask": mask}) != batch_flops(model, [5, 6], train=True)


def test_throughput_mfu_is_speed_monitor_with_the_benchmark_peak_table():
    callback = registry.callbacks.build({"name": "throughput_mfu", "window_size": 2, "peak_tflops": 2.0},
                                        "callbacks[0]")
    assert isinstance(callback, ThroughputMFU) and isinstance(callback, SpeedMonitor)
    assert callback.gpu_flops_available == 2e12 and callback.history_wct.maxlen == 3
    state = SimpleNamespace(device=DeviceCPU(), precision=Precision.FP32, model=_TinyMLM())
    table = ThroughputMFU(window_size=2)
    table.init(state, None)
    assert table.gpu_flops_available == 0  # CPU: no known peak, so MFU is off (no warning, unlike SpeedMonitor)


def test_throughput_mfu_warns_when_the_model_has_no_flops_hook(caplog):
    state = SimpleNamespace(device=DeviceCPU(), precision=Precision.FP32, model=torch.nn.Linear(2, 2))
    with caplog.at_level("WARNING", logger="bertforge"):
        ThroughputMFU().init(state, None)
    assert "Linear has no flops_per_batch" in caplog.text
