"""The throughput_mfu callback: real tokens/s from attention_mask.sum() and the shared FLOPs accounting."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from transformers import BertConfig, BertForMaskedLM

from bertforge import registry
from bertforge.bench.flops import batch_flops
from bertforge.callbacks.throughput import ThroughputMFU


class _Logger:
    def __init__(self):
        self.logged: list[dict] = []

    def log_metrics(self, metrics: dict) -> None:
        self.logged.append(metrics)


def test_callback_counts_real_tokens_and_flops(monkeypatch):
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    model = SimpleNamespace(model=BertForMaskedLM(config))
    model.parameters = model.model.parameters
    mask = torch.tensor([[1] * 10 + [0] * 6, [1] * 16])
    state = SimpleNamespace(model=model, batch={"input_ids": torch.ones_like(mask), "attention_mask": mask},
                            precision="fp32")
    callback = registry.callbacks.build({"name": "throughput_mfu", "window_size": 2, "peak_tflops": 1.0},
                                        "callbacks[0]")
    assert isinstance(callback, ThroughputMFU)
    clock = iter([0.0, 0.5, 1.0, 1.5])
    monkeypatch.setattr("bertforge.callbacks.throughput.time.perf_counter", lambda: next(clock))
    logger = _Logger()
    callback.fit_start(state, logger)
    for _ in range(2):
        callback.after_dataloader(state, logger)
        callback.batch_start(state, logger)
        callback.batch_end(state, logger)
    metrics = logger.logged[-1]
    assert metrics["throughput_mfu/device_real_tokens_per_sec"] == 2 * 26 / 1.0  # 26 real tokens per batch
    assert metrics["throughput_mfu/real_tokens_per_sec"] == 52.0  # one process
    flops = batch_flops(model.model, [10, 16], train=True)
    assert metrics["throughput_mfu/device_tflops_per_sec"] == 2 * flops / 1e12
    assert metrics["throughput_mfu/mfu"] == 2 * flops / 1e12
