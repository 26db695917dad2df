"""Fast-dLLM's block caches (prefix, dual) for FlexBERT: exact on the canvas they were computed on, exact for a
one-layer model after the block changes (the other positions' keys and values depend on their own tokens only),
equal for transformers' ModernBERT and BERT once converted, and the sampler's contract with them."""

from __future__ import annotations

import logging

import pytest
import torch

from bertforge.generation import SamplerConfig, TextGenerator, load_masked_lm, logits_fn, sample
from bertforge.models.block_cache import build_cache
from bertforge.models.flexbert.config import FlexBertConfig
from bertforge.models.flexbert.kv_cache import BlockKVCache, as_flexbert_mlm
from bertforge.models.flexbert.model import FlexBertForMaskedLM

VOCAB = 64
VARIANTS = {
    "rope-window": dict(local_attention_window=6, global_attention_every_n_layers=2),
    "alibi-window-padded": dict(position_encoding="alibi", local_attention_window=4, unpad=False),
    "learned-postnorm": dict(position_encoding="learned", block_type="postnorm", type_vocab_size=2,
                             local_attention_window=None, mlp_type="mlp", norm_bias=True),
}


def flexbert(layers: int = 3, **kw) -> FlexBertForMaskedLM:
    torch.manual_seed(0)
    cfg = FlexBertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                         intermediate_size=48, init_std=0.2, **kw)
    return FlexBertForMaskedLM(cfg).eval()


def padded_batch(lens=(9, 14, 11)) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids (B, W) and their attention mask, real tokens from column 0."""
    torch.manual_seed(1)
    lens_t = torch.tensor(lens)
    mask = (torch.arange(max(lens))[None] < lens_t[:, None]).long()
    return torch.randint(5, VOCAB, mask.shape) * mask, mask


def last_columns(mask: torch.Tensor, width: int) -> torch.Tensor:
    """The columns of each row's last ``width`` real tokens (R, width): the block under decoding."""
    return mask.sum(1, keepdim=True) - width + torch.arange(width)[None]


def at(logits: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    return logits.gather(1, cols[..., None].expand(-1, -1, logits.shape[-1]))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fresh_cache_equals_the_full_forward(variant):
    model, (ids, mask) = flexbert(**VARIANTS[variant]), padded_batch()
    with torch.no_grad():
        full = model(ids, mask).logits
    cache = BlockKVCache(model)
    refreshed = cache.refresh(ids, mask)
    real = mask.bool()
    torch.testing.assert_close(refreshed[real], full[real], rtol=0, atol=1e-5)
    cols = last_columns(mask, 4)
    torch.testing.assert_close(cache.block_logits(torch.arange(3), ids.gather(1, cols), cols), at(full, cols),
                               rtol=0, atol=1e-5)
    suffix = last_columns(mask, 6)  # a prefix cache's pass: the block and what follows it
    torch.testing.assert_close(cache.block_logits(torch.arange(3), ids.gather(1, suffix), suffix), at(full, suffix),
                               rtol=0, atol=1e-5)
    one = torch.tensor([2])  # a subset of the cached rows, as the sampler asks once other rows are done
    torch.testing.assert_close(cache.block_logits(one, ids[one].gather(1, cols[one]), cols[one]),
                               at(full[one], cols[one]), rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_after_the_block_changes_one_layer_is_exact_and_deeper_models_approximate(variant):
    ids, mask = padded_batch()
    cols = last_columns(mask, 4)
    changed = ids.scatter(1, cols[:, :2], 3)  # two block tokens committed since the refresh
    errors = {}
    for layers in (1, 2):
        model = flexbert(layers, **VARIANTS[variant])
        cache = BlockKVCache(model)
        cache.refresh(ids, mask)
        with torch.no_grad():
            truth = at(model(changed, mask).logits, cols)
        errors[layers] = float((cache.block_logits(torch.arange(3), changed.gather(1, cols), cols) - truth).abs().max())
    assert errors[1] < 1e-5  # layer 0's keys/values of a position depend on its own token alone
    assert errors[2] > 1e-3  # the cached deeper keys/values saw the old block: Fast-dLLM's approximation


def test_block_logits_refuses_rows_it_did_not_cache():
    model, (ids, mask) = flexbert(1), padded_batch()
    cache = BlockKVCache(model)
    cache.refresh(ids[:2], mask[:2], rows=torch.tensor([0, 2]))
    cols = last_columns(mask[1:2], 2)
    with pytest.raises(RuntimeError, match="did not run"):
        cache.block_logits(torch.tensor([1]), ids[1:2].gather(1, cols), cols)


@pytest.mark.parametrize("kind", ["modernbert", "bert"])
def test_transformers_masked_lms_convert_to_an_equal_flexbert(kind, modernbert_dir, bert_dir):
    model, tok = load_masked_lm(str(modernbert_dir if kind == "modernbert" else bert_dir))
    converted = as_flexbert_mlm(model)
    assert isinstance(converted, FlexBertForMaskedLM) and as_flexbert_mlm(converted) is converted
    texts = ["Once upon a time there was", "ROMEO: But soft, what light through yonder window breaks?"]
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    got = BlockKVCache(converted).refresh(enc["input_ids"], enc["attention_mask"])
    real = enc["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["prefix", "dual"])
def test_sampler_with_a_one_layer_cache_equals_full_passes(kind):
    model = flexbert(1, local_attention_window=6)
    fn = logits_fn(model)
    prompts = [[5, 9, 12], [7, 8, 9, 10, 11, 30, 31]]
    kw = dict(mask_token_id=4, pad_token_id=0)
    for threshold in (None, 0.05):
        config = SamplerConfig(max_new_tokens=12, steps=12, block_length=4, threshold=threshold)
        plain = sample(fn, prompts, config, **kw)
        cached = sample(fn, prompts, config, **kw, cache=build_cache(kind, model))
        assert torch.equal(cached.tokens, plain.tokens) and torch.equal(cached.commit_step, plain.commit_step)
        assert cached.forward_passes == plain.forward_passes


@pytest.mark.parametrize("kind", ["prefix", "dual"])
def test_sampler_contract_holds_with_the_cache(modernbert_lm, kind):
    model, tok = modernbert_lm
    fn, cache = logits_fn(model, len(tok)), build_cache(kind, model, len(tok))
    assert isinstance(cache, BlockKVCache) and cache.recomputes_suffix == (kind == "prefix")
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in ("Hi", "First Citizen: Before we proceed")]
    config = SamplerConfig(max_new_tokens=12, steps=6, block_length=4, cache=kind)
    kw = dict(mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id)
    seen = []
    batch = sample(fn, prompts, config, **kw, cache=cache, on_step=lambda s, t, o: seen.append(t.clone()))
    assert batch.forward_passes == 6 and (batch.tokens != tok.mask_token_id).all()
    assert (torch.bincount(batch.commit_step[0], minlength=6) == 2).all()  # k = 2 per step, every pass
    for before, after in zip(seen, seen[1:]):
        committed = before != tok.mask_token_id
        assert torch.equal(after[committed], before[committed])  # never rewritten
    for i, p in enumerate(prompts):  # left padding changes nothing with the cache either
        alone = sample(fn, [p], config, **kw, cache=cache)
        assert torch.equal(alone.tokens[0], batch.tokens[i]), i


def test_a_model_without_a_cache_decodes_with_full_passes(bert_dir, caplog):
    linear = torch.nn.Linear(2, 2)
    with caplog.at_level(logging.WARNING, logger="bertforge.models.block_cache"):
        assert build_cache("dual", linear) is None
    assert "Linear has no block cache" in caplog.text and "full forward passes" in caplog.text
    assert build_cache("none", linear) is None
    gen = TextGenerator.from_pretrained(str(bert_dir))
    plain = gen.run(["hello there"], SamplerConfig(max_new_tokens=8, steps=8, block_length=4))
    cached = gen.run(["hello there"], SamplerConfig(max_new_tokens=8, steps=8, block_length=4, cache="dual"))
    assert isinstance(gen.cache(SamplerConfig(cache="dual")), BlockKVCache)  # BERT converts: the cache is used
    assert cached.forward_passes == plain.forward_passes == 8 and cached.tokens.shape == plain.tokens.shape


def test_cache_name_is_checked():
    with pytest.raises(Exception, match="cache.*'triple'.*none, prefix, dual"):
        SamplerConfig(cache="triple")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the cache's bf16 path)")
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_fresh_cache_equals_the_full_forward_on_gpu_in_bf16(variant):
    """On CUDA in bf16 (the model's own attention backend may be flash-attn there): a fresh cache's block logits are
    the full forward's within bf16 rounding."""
    model = flexbert(**VARIANTS[variant]).to("cuda", torch.bfloat16)
    ids, mask = (t.cuda() for t in padded_batch())
    with torch.no_grad():
        full = model(ids, mask).logits.float()
    cache = BlockKVCache(model)
    cache.refresh(ids, mask)
    cols = last_columns(mask, 4)
    block = cache.block_logits(torch.arange(3, device="cuda"), ids.gather(1, cols), cols).float()
    torch.testing.assert_close(block, at(full, cols), rtol=0.05, atol=0.1)
