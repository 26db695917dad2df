"""Run under ``composer -n 2``: each rank writes the texts it streams, to check the split is disjoint.

``dist_read_probe.py LOCAL OUT COUNT`` reads LOCAL/train; ``... LOCAL OUT COUNT REMOTE`` reads a bertforge
``streams:`` mixture of LOCAL/train and REMOTE/train, the latter streamed into a cache under OUT (cache_limit set).
"""

import json
import os
import sys

from streaming import StreamingDataset


def _dataset(local: str, out: str, remote: str | None) -> StreamingDataset:
    if remote is None:
        return StreamingDataset(local=local, split="train", shuffle=True, shuffle_seed=17, batch_size=4)
    from bertforge.config.schema import DatasetConfig
    from bertforge.config.validate import from_dict
    from bertforge.data.streams import streaming_sources

    streams = [{"local": os.path.join(out, "cache-local"), "remote": local},
               {"local": os.path.join(out, "cache-remote"), "remote": f"file://{os.path.abspath(remote)}"}]
    ds = from_dict(DatasetConfig, {"split": "train", "streams": streams, "cache_limit": "50mb"}, "dataset")
    return StreamingDataset(**streaming_sources(ds), shuffle=True, shuffle_seed=17, batch_size=4,
                            cache_limit=ds.cache_limit)


def main(local: str, out: str, count: int, remote: str | None = None) -> None:
    """Read ``count`` samples (all when 0) on this rank and save their texts."""
    dataset = _dataset(local, out, remote)
    texts = [sample["text"] for _, sample in zip(range(count or len(dataset)), dataset)]
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump({"texts": texts, "len": len(dataset)}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
