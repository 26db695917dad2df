"""Stream MDS text (raw or token ids) as tokenized sequences, and build dataloaders with the configured collator."""

from __future__ import annotations

import numpy as np
import torch
from streaming import StreamingDataset
from torch.utils.data import DataLoader

from bertforge import registry
from bertforge.data.mds_checks import PAIRS_FORMAT, read_meta
from bertforge.data.mlm import Collator, PackingCollator, uses_mlm_probability
from bertforge.data.nsp import nsp_sample
from bertforge.data.packing import TokenBudgetBatches
from bertforge.data.sft import SFTCollator
from bertforge.data.streams import log_mixture, sources, streaming_sources
from bertforge.data.tokenizer import special_frame
from bertforge.errors import ConfigError


class StreamingTextDataset(StreamingDataset):
    """A ``StreamingDataset`` yielding ``{'input_ids': [...]}`` with [CLS] ... [SEP], at most ``max_seq_len``.

    Samples hold either ``text`` (tokenized here) or ``input_ids`` (ids without special tokens,
    as written by ``convert_dataset.py --tokenizer``). Shuffling, sharding across ranks and
    workers, and mid-epoch resumption come from mosaicml-streaming.
    """

    def __init__(self, tokenizer, max_seq_len: int, **streaming_kwargs):
        super().__init__(**streaming_kwargs)
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.prefix, self.suffix = special_frame(tokenizer)  # the framing the tokenizer gives text rows

    def __getitem__(self, idx: int) -> dict:
        sample = super().__getitem__(idx)
        if "next_sentence_label" in sample:  # NSP/SOP pairs (bertforge.data.nsp): whole pairs, never cut
            return nsp_sample(sample, self.max_seq_len)
        if "prompt_len" in sample:  # SFT (bertforge.data.sft): complete ids; the collator pads them to pad_to
            ids = np.asarray(sample["input_ids"], dtype=np.int64)[: self.max_seq_len].tolist()
            return {"input_ids": ids, "prompt_len": min(int(sample["prompt_len"]), len(ids)),
                    "pad_to": self.max_seq_len}
        if "input_ids" in sample:
            room = self.max_seq_len - len(self.prefix) - len(self.suffix)
            ids = self.prefix + np.asarray(sample["input_ids"], dtype=np.int64)[:room].tolist() + self.suffix
        else:
            ids = self.tokenizer(
                sample["text"], truncation=True, max_length=self.max_seq_len, return_attention_mask=False
            )["input_ids"]
        return {"input_ids": ids}


def build_collator(loader_cfg, tokenizer, train: bool, key: str) -> Collator:
    """The loader's registry collator (``key``: the loader's YAML key); with packing it must batch packed rows, and
    a collator that draws its own masking rate refuses an ``mlm_probability`` given in the YAML."""
    spec = loader_cfg.collator
    collate = registry.collators.build(spec, f"{key}.collator", tokenizer, loader_cfg.effective_mlm_probability,
                                       not train)
    if loader_cfg.mlm_probability is not None and not uses_mlm_probability(collate):
        raise ConfigError(f"{key}.mlm_probability", f"collator '{spec['name']}' draws its own masking rate for each "
                          "sequence and does not use it; drop the key (see the collator's schedule and eps)")
    for src in sources(loader_cfg.dataset, f"{key}.dataset"):
        check_data_collator(read_meta(src.data_dir), src.data_dir, collate, loader_cfg, key)
    if loader_cfg.packing and not isinstance(collate, PackingCollator):
        raise ConfigError(f"{key}.packing", f"collator '{spec['name']}' cannot batch packed documents (it has no "
                          "collate_packed method); set packing: false or use a collator that packs, e.g. mlm")
    return collate


def check_eval_objective(train_objective: str, eval_collate: Collator, eval_cfg, key: str = "eval_loader") -> None:
    """Refuse (one line) an eval collator whose batches need other metrics than ``train_objective``'s: the model sets
    up its metrics once, for the train collator (an mdlm eval of an mlm run would report no ELBO)."""
    ours = getattr(eval_collate, "objective", "mlm")
    if ours != train_objective:
        raise ConfigError(f"{key}.collator", f"'{eval_cfg.collator['name']}' makes {ours} batches but the model scores "
                          f"the train_loader collator's objective, {train_objective}; use a collator of that objective")


def check_data_collator(meta: dict, folder: str, collate: Collator, loader_cfg, key: str) -> None:
    """Refuse (one line naming ``key``) a collator that would silently drop what a folder's rows carry: sentence
    pairs (segment ids, pair labels) or chat samples (which tokens are the prompt) batched as plain text, a pair or
    chat collator on other data, and masking options given for pairs whose masks were stored at conversion."""
    fmt = meta.get("format")
    if not fmt:  # data written before formats were recorded: nothing to compare
        return
    needs = "sft" if isinstance(collate, SFTCollator) else (
        PAIRS_FORMAT if getattr(collate, "objective", "mlm") in ("nsp", "sop") else None)
    holds = fmt if fmt in (PAIRS_FORMAT, "sft") else None
    if needs != holds:
        what = {PAIRS_FORMAT: "sentence pairs (convert_dataset.py --objective)",
                "sft": "chat samples (convert_dataset.py --sft)"}.get(holds, f"{fmt} rows")
        fit = {PAIRS_FORMAT: "nsp", "sft": "sft (answers masked, prompts kept)"}.get(holds, "mlm or mdlm")
        raise ConfigError(f"{key}.collator", f"{folder} holds {what}; collator '{loader_cfg.collator['name']}' does "
                          f"not fit them (it would drop what they carry or fail on them): use collator {fit}")
    if holds == PAIRS_FORMAT and (meta.get("pairs") or {}).get("static_masking"):
        given = [k for k, v in (("mlm_probability", loader_cfg.mlm_probability is not None),
                                ("collator.whole_word_mask", loader_cfg.collator.get("whole_word_mask"))) if v]
        if given:
            raise ConfigError(f"{key}.{given[0]}", f"{folder} holds the masks made at conversion (--static-masking), "
                              "which the collator keeps, so this is not used; drop it or convert without "
                              "--static-masking")


def build_text_dataset(ds, tokenizer, max_seq_len: int, batch_size: int, seed: int, key: str) -> StreamingTextDataset:
    """The :class:`StreamingTextDataset` of dataset block ``ds`` (at ``key``): one folder or a ``streams`` mixture,
    whose per-source samples per epoch are logged once."""
    try:
        dataset = StreamingTextDataset(
            tokenizer=tokenizer, max_seq_len=max_seq_len, **streaming_sources(ds), shuffle=ds.shuffle,
            shuffle_seed=seed if ds.shuffle_seed is None else ds.shuffle_seed, shuffle_algo=ds.shuffle_algo,
            predownload=ds.predownload, cache_limit=ds.cache_limit, batch_size=batch_size,
        )
    except ValueError as err:  # streaming checks the cache limit against the shard sizes once it has the index
        if ds.cache_limit is None or "cache limit" not in str(err).lower():
            raise
        raise ConfigError(f"{key}.cache_limit", str(err).splitlines()[0]) from None
    log_mixture(dataset, ds, key)
    return dataset


def build_text_dataloader(loader_cfg, tokenizer, max_seq_len: int, batch_size: int, seed: int, train: bool,
                          collate: Collator | None = None):
    """A torch DataLoader over a :class:`StreamingTextDataset`, batched by the loader's ``collator`` block
    (``collate``: that collator when the caller built it already).

    With ``loader_cfg.packing`` every batch holds exactly ``batch_size`` rows of ``max_seq_len`` token
    slots filled with whole documents (:class:`~bertforge.data.packing.TokenBudgetBatches`).
    """
    key = "train_loader" if train else "eval_loader"
    collate = collate if collate is not None else build_collator(loader_cfg, tokenizer, train, key)
    dataset = build_text_dataset(loader_cfg.dataset, tokenizer, max_seq_len, batch_size, seed, f"{key}.dataset")
    drop_last = loader_cfg.drop_last is not False if train else False  # eval: refused by the schema when true
    extra = {}
    if loader_cfg.num_workers > 0:
        extra["prefetch_factor"] = loader_cfg.prefetch_factor
        extra["persistent_workers"] = loader_cfg.persistent_workers
    # The loader's own generator keeps iterator creation from drawing on the global RNG, which holds
    # the masking and dropout stream that Composer checkpoints: resumed runs then replay it exactly.
    extra |= {"generator": torch.Generator().manual_seed(seed), "num_workers": loader_cfg.num_workers,
              "pin_memory": loader_cfg.pin_memory}
    if loader_cfg.packing:  # the dataset yields whole batches of batch_size rows x max_seq_len slots
        lookahead = loader_cfg.effective_packing_lookahead
        batches = TokenBudgetBatches(dataset, batch_size, max_seq_len, collate, lookahead, drop_last,
                                     tracks_position=loader_cfg.num_workers == 0)
        return PackedBatchLoader(batches, **extra)
    return DataLoader(dataset, batch_size=batch_size, collate_fn=collate, drop_last=drop_last, **extra)


class PackedBatchLoader(DataLoader):
    """A DataLoader over already-packed batches that reports their row count as ``batch_size``.

    Composer reads ``batch_size`` to start (auto) microbatching in training and evaluation.
    """

    def __init__(self, batches: TokenBudgetBatches, **kwargs) -> None:
        super().__init__(batches, batch_size=None, **kwargs)
        object.__setattr__(self, "batch_size", batches.rows)  # DataLoader refuses the attribute after init
