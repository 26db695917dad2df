"""Run under ``composer -n 2``: each rank writes the texts it streams, to check the split is disjoint."""

import json
import os
import sys

from streaming import StreamingDataset


def main(local: str, out: str, count: int) -> None:
    """Read ``count`` samples of ``local``/train on this rank and save their texts."""
    dataset = StreamingDataset(local=local, split="train", shuffle=True, shuffle_seed=17, batch_size=4)
    texts = [sample["text"] for _, sample in zip(range(count), dataset)]
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump({"texts": texts, "len": len(dataset)}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
