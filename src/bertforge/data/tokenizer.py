"""Load a Hugging Face tokenizer, or train a WordPiece tokenizer on the train split and save it."""

from __future__ import annotations

import os
from collections.abc import Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from bertforge.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
REQUIRED = ("pad_token", "mask_token", "cls_token", "sep_token")


def load_tokenizer(name: str, key: str = "tokenizer.name") -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(name)``, checked to have the special tokens MLM needs."""
    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{key}: cannot load tokenizer '{name}' ({first}); give a local folder or a Hub name") from None
    missing = [t for t in REQUIRED if getattr(tok, t) is None]
    if missing:
        raise UserError(f"{key}: tokenizer '{name}' has no {', '.join(missing)}; MLM needs pad, mask, cls and sep")
    return tok


def train_wordpiece(texts: Iterator[str], vocab_size: int, lowercase: bool = True) -> PreTrainedTokenizerFast:
    """Train a BERT-style WordPiece tokenizer on ``texts`` with the ``tokenizers`` library."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS))
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        do_lower_case=lowercase,
    )


def iter_mds_texts(folder: str, limit: int | None = None) -> Iterator[str]:
    """Yield the ``text`` column of a local MDS split (at most ``limit`` samples)."""
    from streaming import LocalDataset

    dataset = LocalDataset(local=folder)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(count):
        sample = dataset[i]
        if "text" not in sample:
            raise UserError(
                f"tokenizer.name: {folder} stores token ids, not text, so no tokenizer can be trained on it; "
                "set tokenizer.name to the tokenizer used by convert_dataset.py"
            )
        yield sample["text"]


def tokenizer_for_run(name: str | None, train_folder: str, save_dir: str, vocab_size: int,
                      lowercase: bool, max_docs: int | None) -> PreTrainedTokenizerBase:
    """The run's tokenizer: loaded when ``name`` is set, else trained on ``train_folder`` (or reused
    from ``save_dir`` when an earlier attempt of this run already trained it) and saved to ``save_dir``."""
    if name:
        return load_tokenizer(name)
    if os.path.isfile(os.path.join(save_dir, "tokenizer.json")):
        return load_tokenizer(save_dir, key="tokenizer (saved with the run)")
    tok = train_wordpiece(iter_mds_texts(train_folder, max_docs), vocab_size, lowercase)
    tok.save_pretrained(save_dir)
    return tok
