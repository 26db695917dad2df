"""The Monte-Carlo ELBO estimate: unbiased for the exact bound (enumerated in float64 on an analytic toy model),
its spread falls as 1/sqrt(mc_num), and batching or the device of the work does not change it."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from bertforge.errors import ConfigError
from bertforge.generation import logits_fn
from bertforge.generation.likelihood import ELBOConfig, draw_masks, elbo_loglikelihood

V, MASK, D = 7, 6, 5
CONTEXT, CONTINUATION = [0, 3], [1, 4, 2, 5]


def toy_model():
    """An analytic float64 model whose every prediction depends on every input token (masked or not)."""
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(V, D, generator=gen, dtype=torch.float64)
    mix = torch.randn(8, 8, generator=gen, dtype=torch.float64)  # (from position, to position)
    out = torch.randn(D, V, generator=gen, dtype=torch.float64) * 2

    def fn(ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        width = ids.shape[1]
        h = torch.einsum("bid,ij->bjd", emb[ids], mix[:width, :width]).tanh()  # (B, W, D)
        return h @ out  # (B, W, V)

    return fn


def exact_bound(fn) -> float:
    """E_k E_M [(L / k) sum_{i in M} log p(x_i)], k uniform on 1..L, M uniform of size k: every mask, one by one."""
    seq, start, length = CONTEXT + CONTINUATION, len(CONTEXT), len(CONTINUATION)
    total = 0.0
    for k in range(1, length + 1):
        for subset in itertools.combinations(range(length), k):
            ids = torch.tensor([seq])
            ids[0, [start + i for i in subset]] = MASK
            logits = fn(ids, torch.ones_like(ids))[0]
            logits[:, MASK] = float("-inf")
            logp = logits.log_softmax(-1)
            score = sum(float(logp[start + i, seq[start + i]]) for i in subset)
            total += (1 / length) / math.comb(length, k) * (length / k) * score
    return total


def estimate(fn, **cfg):
    return elbo_loglikelihood(fn, CONTEXT, CONTINUATION, mask_token_id=MASK, config=ELBOConfig(**cfg))


@pytest.mark.parametrize("stratified", [True, False])
def test_estimate_converges_to_the_exact_bound(stratified):
    fn = toy_model()
    exact = exact_bound(fn)
    est = estimate(fn, mc_num=8192, batch_size=4096, seed=1, stratified=stratified)
    assert est.stderr < 0.005 * abs(exact)  # 8192 samples pin the value to ~0.2%
    assert abs(est.value - exact) < 4 * est.stderr  # fixed seed; 4 standard errors
    # the mean of many small (mc_num 4) estimates is the exact bound too: unbiased, not only consistent
    means = torch.tensor([estimate(fn, mc_num=4, seed=s, stratified=stratified).value for s in range(100)])
    assert abs(float(means.mean()) - exact) < 4 * float(means.std()) / math.sqrt(100)


def test_spread_falls_as_one_over_sqrt_mc_num():
    fn = toy_model()
    # independent samples: 4800 of them cut into 1200 estimates of mc_num 4 and 75 of mc_num 64
    samples = estimate(fn, mc_num=4800, batch_size=4800, seed=2, stratified=False).samples
    spread = {n: float(samples.view(-1, n).mean(1).std()) for n in (4, 64)}
    # expected ratio sqrt(64 / 4) = 4; 75 repeats estimate a std within ~8% (one sigma), so +-25%
    assert 3.0 < spread[4] / spread[64] < 5.0
    per_sample = float(samples.std())
    assert abs(spread[4] - per_sample / 2) < 0.1 * per_sample / 2  # std of a mean of 4: sigma / 2, within 10%
    strat = float(torch.tensor([estimate(fn, mc_num=64, seed=s).value for s in range(40)]).std())
    assert strat < spread[64]  # stratifying k lowers the variance further


def test_masks_have_uniform_sizes_and_weights():
    cfg = ELBOConfig(mc_num=12, stratified=True)
    masks, weights = draw_masks(4, cfg, torch.Generator().manual_seed(0))
    k = masks.sum(1)
    assert torch.bincount(k, minlength=5)[1:].tolist() == [3, 3, 3, 3]  # 12 samples spread evenly over k = 1..4
    assert torch.equal(weights, 4 / k.double())


def test_batching_and_seed(modernbert_lm):
    model, tok = modernbert_lm
    fn = logits_fn(model, len(tok))
    ctx, cont = tok("ROMEO: where", add_special_tokens=False)["input_ids"], [100, 200, 300]
    one = elbo_loglikelihood(fn, ctx, cont, mask_token_id=tok.mask_token_id, config=ELBOConfig(16, batch_size=1))
    big = elbo_loglikelihood(fn, ctx, cont, mask_token_id=tok.mask_token_id, config=ELBOConfig(16, batch_size=16))
    torch.testing.assert_close(one.samples, big.samples, rtol=0, atol=1e-4)  # float32 model, batched vs alone
    other = elbo_loglikelihood(fn, ctx, cont, mask_token_id=tok.mask_token_id, config=ELBOConfig(16, seed=1))
    assert not torch.equal(other.samples, big.samples)
    assert big.value < 0 and big.stderr > 0


def test_bad_config_is_one_line():
    with pytest.raises(ConfigError, match="mc_num"):
        ELBOConfig(mc_num=0)
