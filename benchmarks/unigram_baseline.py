"""The unigram baseline a masked-token loss must beat, in nats per token.

Prints the entropy of the held-out split's own token frequencies and the cross-entropy of its tokens under the
train split's frequencies (add-one smoothed over the vocabulary): what a model that ignores every context would
score. Word tokens only (no [CLS]/[SEP]), as the MLM and MDLM losses count them.

    python benchmarks/unigram_baseline.py --data data/generative-mds --tokenizer data/generative-mds/tokenizer
"""

from __future__ import annotations

import argparse
import math
import os
from collections import Counter

from bertforge.data.tokenizer import iter_mds_texts, load_tokenizer


def token_counts(folder: str, tokenizer) -> Counter:
    """Token-id counts of the raw-text MDS split at ``folder``."""
    counts: Counter = Counter()
    texts = list(iter_mds_texts(folder))
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        counts.update(ids)
    return counts


def entropy(counts: Counter) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def cross_entropy(held_out: Counter, train: Counter, vocab_size: int) -> float:
    """Nats per held-out token under the train frequencies, add-one smoothed over ``vocab_size`` ids."""
    denominator = sum(train.values()) + vocab_size
    total = sum(held_out.values())
    return -sum(c * math.log((train[i] + 1) / denominator) for i, c in held_out.items()) / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="raw-text MDS folder with the two splits")
    parser.add_argument("--tokenizer", required=True, help="tokenizer folder or Hub name")
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--eval-split", default="val")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.tokenizer)
    held_out = token_counts(os.path.join(args.data, args.eval_split), tokenizer)
    train = token_counts(os.path.join(args.data, args.train_split), tokenizer)
    print(f"{args.eval_split}: {sum(held_out.values())} tokens; unigram entropy {entropy(held_out):.2f} nats/token; "
          f"under {args.train_split} frequencies {cross_entropy(held_out, train, len(tokenizer)):.2f} nats/token")


if __name__ == "__main__":
    main()
