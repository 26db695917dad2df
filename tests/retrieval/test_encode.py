"""Length batching keeps the input order and cuts padding; exact MaxSim equals a float64 double loop."""

import random

import torch

from bertforge.retrieval.encode import encode_by_length, length_batches, maxsim_scores, padded_tokens, top_ids


def test_length_batches_cover_every_index_and_cut_padding():
    rng = random.Random(0)
    lengths = [rng.randint(5, 512) for _ in range(1000)]
    batches = length_batches(lengths, 32)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    assert all(len(b) == 32 for b in batches[:-1])
    in_order = [list(range(i, min(i + 32, 1000))) for i in range(0, 1000, 32)]
    sorted_pad = padded_tokens(lengths, batches) - sum(lengths)
    plain_pad = padded_tokens(lengths, in_order) - sum(lengths)
    assert sorted_pad < 0.1 * plain_pad  # random lengths: padding falls by more than 10x


def test_encode_by_length_returns_outputs_in_input_order():
    texts = [f"text {i} " + "w " * (i % 7) for i in range(50)]
    lengths = [len(t.split()) for t in texts]
    seen_batches = []

    def encode(batch):
        seen_batches.append([len(t.split()) for t in batch])
        return [t.upper() for t in batch]

    out = encode_by_length(encode, texts, lengths, batch_size=8)
    assert out.outputs == [t.upper() for t in texts]
    assert all(max(b) - min(b) <= 1 for b in seen_batches)  # similar lengths share a batch
    assert out.texts_per_s > 0 and 0 <= out.padding < 0.2


def test_maxsim_matches_float64_loop_and_top_ids():
    gen = torch.Generator().manual_seed(0)
    queries = [torch.randn(n, 8, generator=gen) for n in (4, 6, 3)]
    docs = [torch.randn(n, 8, generator=gen) for n in (5, 1, 9, 7, 2)]
    ref = torch.tensor([[sum(max(float(q[i].double() @ d[j].double()) for j in range(len(d))) for i in range(len(q)))
                         for d in docs] for q in queries], dtype=torch.float64)
    got = maxsim_scores(queries, docs, chunk=2)  # chunks of 2 documents: padding must not leak into the max
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-5)
    ranked = top_ids(got, ["a", "b", "c"], ["d0", "d1", "d2", "d3", "d4"], k=2)
    assert ranked["a"] == [f"d{j}" for j in ref[0].argsort(descending=True)[:2].tolist()]
