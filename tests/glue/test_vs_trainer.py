"""glue.py's finetuning loop against transformers' Trainer, step for step.

With the randomness matched (same starting weights, batch order and dropout seed, as
``benchmarks/glue_vs_trainer.py --randomness matched`` does), the two must end with the same weights:
this pins the optimizer update, the warmup/decay schedule (batch i at schedule(i)), gradient
clipping, the loss and the dev metrics to the reference implementation.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import pytest
import torch

from tests.conftest import REPO
from tests.glue.conftest import GLUE_DIR, TOKENIZER


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("glue_vs_trainer", REPO / "benchmarks" / "glue_vs_trainer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory) -> str:
    """A Hugging Face folder: a 2-layer random BERT with the bert-base-uncased tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(TOKENIZER)).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("task", ["mrpc", "stsb"])
def test_glue_finetune_equals_transformers_trainer_with_matched_randomness(bench, tiny_pretrained, tmp_path, task,
                                                                           monkeypatch):
    from bertforge.glue import run_sweep
    from bertforge.glue.sweep import plan, resolve

    monkeypatch.setitem(bench.HPARAMS, "epochs", 2)
    monkeypatch.setitem(bench.HPARAMS, "batch_size", 16)
    monkeypatch.setitem(bench.HPARAMS, "max_seq_len", 32)
    monkeypatch.setitem(bench.HPARAMS, "lr", 1e-3)  # large enough that a lagged or missed step shows
    args = argparse.Namespace(data_dir=str(GLUE_DIR), max_train_samples=80, sst2_samples=None, seeds=[17],
                              out=str(tmp_path), gpu=False, randomness="matched")
    assert bench.total_steps(task, args) == 10 and bench.warmup_steps(task, args) == 1

    cfg = bench.glue_config(tiny_pretrained, task, args, save=True)
    summary = run_sweep(cfg)
    job = plan(resolve(cfg))[0][0]
    ours = torch.load(os.path.join(job.job_dir, "model.pt"), weights_only=True)["state"]["model"]
    trainer, dev = bench.trainer_finetune(tiny_pretrained, task, 17, args)
    theirs = trainer.model.state_dict()

    assert {f"model.{k}" for k in theirs} == set(ours)
    start = bench.glue_initial_weights(tiny_pretrained, task, 17, args)
    moved = max((theirs[k] - start[k]).abs().max().item() for k in theirs)
    assert moved > 1e-3, "training did not change the weights; the comparison would be empty"
    for name, value in theirs.items():  # fp32 on CPU; observed max difference ~1e-7
        torch.testing.assert_close(ours[f"model.{name}"], value, rtol=0, atol=2e-5, msg=name)

    pred = trainer.predict(dev)
    metrics = bench.trainer_metrics(task, pred.predictions, pred.label_ids)
    score = {int(s): v for s, v in next(iter(summary["entries"].values()))["scores"].items()}[17]
    # in percent; a barely trained regressor's near-tied outputs make Spearman move by ~1e-3 with 1e-7 weight noise
    assert score == pytest.approx(bench.entry_score(metrics, task, bench.TASKS[task].evals[0].entry), abs=1e-2)
