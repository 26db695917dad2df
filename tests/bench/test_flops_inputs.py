"""FLOPs accounting, the GPU peak table, length samplers and batches, timing statistics."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from bertforge.bench.inputs import LengthSampler, corpus_lengths, make_batch
from bertforge.bench.timing import PeakMemory, is_oom, time_calls
from bertforge.errors import UserError
from bertforge.models import flops
from bertforge.models.params import count_params
from tests.conftest import SAMPLE_TEXT


def _bert(layers: int = 2, hidden: int = 32) -> BertForMaskedLM:
    config = BertConfig(vocab_size=100, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertForMaskedLM(config)


def test_flops_per_token_is_2n_plus_attention_and_train_is_3x():
    model = _bert()
    total, nonemb = count_params(model)
    emb = model.bert.embeddings
    assert total - nonemb == sum(e.weight.numel() for e in (emb.word_embeddings, emb.position_embeddings,
                                                            emb.token_type_embeddings))
    fwd = flops.flops_per_token(model, 64, train=False)
    assert fwd == 2 * nonemb + 4 * 2 * 32 * 64
    assert flops.flops_per_token(model, 64, train=True) == 3 * fwd == 6 * nonemb + 12 * 2 * 32 * 64
    assert flops.batch_flops(model, [64, 10], train=False) == 64 * fwd + 10 * flops.flops_per_token(model, 10, False)


def test_a_family_can_supply_its_own_flops_per_token():
    model = _bert()
    model.config.flops_per_token = lambda seq_len: 1000.0 + seq_len  # e.g. M2: no attention term
    assert flops.flops_per_token(model, 24, train=True) == 3 * 1024.0
    wrapped = torch.nn.Module()
    wrapped.model = model  # a ComposerModel's inner module is found too
    assert flops.batch_flops(wrapped, [24, 24], train=False) == 2 * 24 * 1024.0


@pytest.mark.parametrize("seq_len,half", [(5, 1), (7, 2), (40, 8), (16, 15), (9, None)])
def test_mean_keys_per_query_counts_the_sliding_window(seq_len, half):
    pos = torch.arange(seq_len)
    seen = (pos[:, None] - pos[None, :]).abs() <= (seq_len if half is None else half)
    assert flops.mean_keys_per_query(seq_len, half) == pytest.approx(seen.sum().item() / seq_len)


def test_flexbert_local_layers_count_only_their_window():
    from bertforge.models.flexbert.config import FlexBertConfig
    from bertforge.models.flexbert.model import FlexBertModel

    cfg = FlexBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                         intermediate_size=48, local_attention_window=16, global_attention_every_n_layers=3)
    model = FlexBertModel(cfg)
    nonemb = count_params(model)[1]
    local = flops.mean_keys_per_query(512, 8)
    assert local < 17
    assert flops.flops_per_token(model, 512, train=False) == pytest.approx(2 * nonemb + 4 * 32 * (512 + 2 * local))
    cfg_global = FlexBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=48, local_attention_window=None)
    assert flops.flops_per_token(FlexBertModel(cfg_global), 512, False) == 2 * nonemb + 4 * 3 * 32 * 512


@pytest.mark.parametrize("name, precision, tf32, tflops", [
    ("NVIDIA H100 80GB HBM3", "amp_bf16", False, 989.4),
    ("NVIDIA H100 PCIe", "amp_bf16", False, 756.0),
    ("NVIDIA H200", "fp32", False, 66.9),
    ("NVIDIA H200", "fp32", True, 494.7),
    ("NVIDIA A100-SXM4-80GB", "amp_bf16", False, 312.0),
    ("NVIDIA A10", "fp32", False, 31.2),
    ("NVIDIA L4", "amp_bf16", False, 121.0),
    ("NVIDIA GeForce RTX 4090", "amp_bf16", False, 165.2),
    ("NVIDIA L40S", "amp_bf16", False, None),
])
def test_peak_table(name, precision, tf32, tflops):
    peak = flops.table_peak_flops(name, precision, tf32)
    assert peak == (None if tflops is None else pytest.approx(tflops * 1e12))


def test_peak_flops_flag_wins_and_cpu_has_none():
    assert flops.peak_flops("fp32", "cpu") is None
    assert flops.peak_flops("fp32", "cpu", peak_tflops=2.0) == 2e12


def test_length_samplers_stay_in_range():
    for dist in ("uniform", "normal"):
        lengths = LengthSampler(dist, seed=1).sample(500, 128)
        assert min(lengths) >= 8 and max(lengths) <= 128 and 40 < sum(lengths) / 500 < 90
    corpus = LengthSampler("file", corpus=[5, 50, 500], seed=0).sample(200, 64)
    assert set(corpus) == {8, 50, 64}  # clipped to [8, L] like truncation in training
    with pytest.raises(UserError, match="unknown distribution"):
        LengthSampler("zipf")


def test_corpus_lengths_with_and_without_a_tokenizer():
    words, note = corpus_lengths(str(SAMPLE_TEXT), None, limit=50)
    assert len(words) == 50 and "whitespace" in note

    class Tok:
        def __call__(self, texts, add_special_tokens):
            return {"input_ids": [[0] * (len(t) // 4 + 2) for t in texts]}

    chars, note = corpus_lengths(str(SAMPLE_TEXT), Tok(), limit=50)
    assert note == "" and chars != words


def test_make_batch_counts_real_tokens_and_never_uses_the_pad_id_inside():
    batch = make_batch([5, 17, 9], 64, vocab_size=50, pad_token_id=3, device=torch.device("cpu"), with_labels=True)
    ids, mask = batch.tensors["input_ids"], batch.tensors["attention_mask"]
    assert ids.shape == (3, 24) and batch.real_tokens == 31 == int(mask.sum()) and batch.padded_tokens == 72
    assert not (ids[mask.bool()] == 3).any() and (ids[~mask.bool()] == 3).all()
    assert ids.max() < 50 and (batch.tensors["labels"][~mask.bool()] == -100).all()
    assert make_batch([5], 64, 50, 0, torch.device("cpu"), False, pad_to="max").padded_tokens == 64


def test_timing_excludes_warmup_and_orders_median_min_max():
    calls = []
    timing = time_calls(calls.append, torch.device("cpu"), repeats=5, warmup=2)
    assert calls == [0, 1, 2, 3, 4, 5, 6] and len(timing.times_ms) == 5
    assert timing.min <= timing.median <= timing.max


def test_cpu_peak_memory_sees_a_large_allocation():
    with PeakMemory(torch.device("cpu")) as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB
        del x
    assert mem.kind in ("rss_peak_rise", "ru_maxrss_rise") and mem.mib >= (60 if mem.kind == "rss_peak_rise" else 0)


def test_is_oom():
    assert is_oom(torch.OutOfMemoryError("x")) and is_oom(RuntimeError("CUDA out of memory."))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("out of memory"))
