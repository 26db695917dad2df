"""Batches of sentence pairs for masked-LM + next-sentence (NSP) or sentence-order (SOP) prediction.

Samples come from ``convert_dataset.py --objective nsp|sop`` (:mod:`bertforge.data.nsp_pairs`) through
:func:`nsp_sample`: ``[CLS] A [SEP] B [SEP]`` ids, segment ids and the pair's label, and, in folders written with
``--static-masking``, the masked positions and their original ids (the ids are then already corrupted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from bertforge.data.mlm import IGNORE_INDEX, MLMCollator, build_mlm_collator
from bertforge.errors import UserError
from bertforge.registry import collators

STATIC_KEYS = ("masked_lm_positions", "masked_lm_ids")


def nsp_sample(record: dict, max_seq_len: int) -> dict:
    """The collator's sample for one MDS pair record; a pair longer than ``max_seq_len`` is refused (cutting it
    would drop its [SEP] and part of B)."""
    ids = np.asarray(record["input_ids"], dtype=np.int64)
    if len(ids) > max_seq_len:
        raise UserError(f"max_seq_len: {max_seq_len} is shorter than a sentence pair of {len(ids)} tokens in the "
                        "data; set it to at least the max_seq_len in the data folder's bertforge_meta.json")
    sample = {"input_ids": ids.tolist(), "token_type_ids": np.asarray(record["token_type_ids"]).tolist(),
              "next_sentence_label": int(record["next_sentence_label"])}
    for key in STATIC_KEYS:
        if key in record:
            sample[key] = np.asarray(record[key], dtype=np.int64).tolist()
    return sample


@dataclass
class NSPCollator:
    """Pads pair samples and masks them for MLM; keeps the pair labels.

    Samples carrying ``masked_lm_positions`` (static masking, precomputed by the converter) keep their ids and
    take their labels from the stored positions; the others are masked here by ``masker`` (dynamic masking,
    optionally whole-word). The batch: ``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels`` (-100
    except at masked positions) and ``next_sentence_label`` ``(B,)`` (0: B follows A / in order, 1: random B /
    swapped). Packing is not supported: a pair is one sequence with its own segment ids.
    """

    masker: MLMCollator
    objective: ClassVar[str] = "nsp"
    """What the model should score: MLM plus the 2-way pair classifier (``model.set_objective``)."""

    def __call__(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = self.masker.pad(samples)
        token_type_ids = torch.zeros_like(input_ids)
        for row, sample in enumerate(samples):
            token_type_ids[row, : len(sample["token_type_ids"])] = torch.as_tensor(sample["token_type_ids"])
        static = sum(STATIC_KEYS[0] in s for s in samples)
        if static == 0:
            input_ids, labels = self.masker.mask(input_ids, attention_mask)
        elif static == len(samples):
            labels = torch.full_like(input_ids, IGNORE_INDEX)
            for row, sample in enumerate(samples):
                labels[row, sample["masked_lm_positions"]] = torch.as_tensor(sample["masked_lm_ids"])
        else:
            raise UserError(f"a batch mixes statically masked pairs ({static} of {len(samples)}) with unmasked "
                            "ones; mix only folders converted with the same --static-masking setting")
        return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask,
                "labels": labels, "next_sentence_label": torch.tensor(
                    [int(s["next_sentence_label"]) for s in samples], dtype=torch.long)}


@collators.register("nsp")
def build_nsp_collator(tokenizer, mlm_probability: float, deterministic: bool,
                       whole_word_mask: bool = False) -> NSPCollator:
    """Sentence pairs (NSP or SOP data): MLM masking (dynamic, optionally whole-word, or the data's static masks)
    plus the pair label; no packing."""
    return NSPCollator(build_mlm_collator(tokenizer, mlm_probability, deterministic, whole_word_mask))
