"""Load a Hugging Face tokenizer, or train a WordPiece tokenizer on the train split (deterministically)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from bertforge.data.mds_checks import DATA_TOKENIZER_DIR, read_meta, split_dir
from bertforge.errors import UserError

if TYPE_CHECKING:  # transformers is imported where it is used: training alone needs only `tokenizers`
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
REQUIRED = ("pad_token", "mask_token", "cls_token", "sep_token")  # what MLM needs
CLASSIFIER_REQUIRED = ("pad_token", "cls_token", "sep_token")  # sentence (pair) classification
PREFIX = "##"

log = logging.getLogger(__name__)


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special-token ids ``tokenizer`` puts before and after one sequence (BERT's ``([CLS], [SEP])``), read from
    what it does to a probe text. Token-id data gets exactly the framing that text gets: the generic
    ``build_inputs_with_special_tokens`` returns the ids bare for a plain fast tokenizer such as ModernBERT's (its
    id rows lacked [CLS]/[SEP] while its text rows had them), and transformers 5 dropped the method."""
    probe = "the a of"
    body = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    for start in range(len(full) - len(body) + 1) if body else ():
        if full[start:start + len(body)] == body:
            return full[:start], full[start + len(body):]
    raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')}: cannot tell which special tokens it adds "
                    "around a sequence (its ids for a text with and without them do not nest); use a tokenizer that "
                    "frames a sequence with fixed special tokens, e.g. [CLS] ... [SEP]")


def vocab_fingerprint(tokenizer: Any) -> str:
    """A short hash of what token ids mean to ``tokenizer``: its vocabulary (token -> id) and which ids its special
    tokens take. Equal for two tokenizers whose ids a model can share; data records it (``bertforge_meta.json``)."""
    import hashlib

    specials = {name: getattr(tokenizer, f"{name}_token_id", None)
                for name in ("pad", "mask", "cls", "sep", "unk", "bos", "eos")}
    payload = json.dumps([sorted(tokenizer.get_vocab().items()), specials], separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def checkpoint_tokenizer(checkpoint: str | None) -> str | None:
    """The tokenizer ``checkpoint`` was trained with, where it says: a main.py run's saved ``tokenizer/`` or its
    configured ``tokenizer.name``, or a Hugging Face folder holding tokenizer files; None when unknown."""
    from omegaconf import OmegaConf

    from bertforge.checkpoints import run_dir_of

    if not checkpoint or "://" in checkpoint:
        return None
    if os.path.isdir(checkpoint):
        return checkpoint if any(os.path.isfile(os.path.join(checkpoint, f)) for f in TOKENIZER_FILES) else None
    saved, config = (os.path.join(run_dir_of(checkpoint), name) for name in ("tokenizer", "config.yaml"))
    if os.path.isdir(saved):
        return saved
    if os.path.isfile(config):
        return (OmegaConf.to_container(OmegaConf.load(config)).get("tokenizer") or {}).get("name") or None
    return None


def check_same_tokenizer(tokenizer: Any, name: str | None, trained_with: str, checkpoint: str, key: str,
                         fix: str) -> None:
    """Refuse (one line naming ``key``, ending with ``fix``) a ``tokenizer`` whose ids mean other tokens than those
    of ``trained_with``, the tokenizer ``checkpoint`` was trained with; a warning when that one cannot be loaded."""
    try:
        theirs = vocab_fingerprint(load_tokenizer(trained_with, key=key, required=()))
    except UserError as err:  # e.g. a Hub name with no network: nothing to compare against
        log.warning("%s: cannot compare with %s, the tokenizer of %s (%s)", key, trained_with, checkpoint, err)
        return
    if vocab_fingerprint(tokenizer) != theirs:
        ours = f"'{name}'" if name else "the tokenizer trained for this run"
        raise UserError(f"{key}: {ours} is not the tokenizer {checkpoint} was trained with ('{trained_with}'): "
                        f"their vocabularies or special-token ids differ; {fix}")


def check_pretrained_tokenizer(tokenizer: Any, name: str | None, source: str | None, key: str) -> None:
    """Refuse (one line) ``tokenizer`` (configured as ``name``; None: trained for this run) for weights from
    ``source`` (a main.py checkpoint, a folder or a Hub name) when the tokenizer they were trained with gives its
    ids other meanings. A remote checkpoint (``s3://...``) says nothing about its tokenizer here."""
    if not source or source == name or "://" in source:
        return
    trained_with = checkpoint_tokenizer(source) if os.path.exists(source) else source
    if trained_with and trained_with != name:
        check_same_tokenizer(tokenizer, name, trained_with, source, key, f"use the tokenizer of {source}")


def load_tokenizer(name: str, key: str = "tokenizer.name",
                   required: tuple[str, ...] = REQUIRED) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(name)``, checked to have the ``required`` special tokens (default:
    the ones MLM needs). Every tokenizer bertforge loads goes through here; errors are one line naming ``key``."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{key}: cannot load tokenizer '{name}' ({first}); give a local folder or a Hub name") from None
    missing = [t for t in required if getattr(tok, t) is None]
    if missing:
        raise UserError(f"{key}: tokenizer '{name}' has no {', '.join(missing)}; this use needs "
                        f"{', '.join(t.removesuffix('_token') for t in required)}")
    return tok


def _bert_pipeline(model: models.Model, lowercase: bool) -> Tokenizer:
    tok = Tokenizer(model)
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def _continuation_chars(tok: Tokenizer, texts: Iterable[str]) -> list[str]:
    """The characters that follow the first one in some word of ``texts`` (as ``tok`` splits words), sorted."""
    chars: set[str] = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            chars.update(word[1:])
    return sorted(chars)


def train_wordpiece_backend(texts: Iterable[str], vocab_size: int, lowercase: bool = True) -> Tokenizer:
    """Train a BERT-style WordPiece ``tokenizers.Tokenizer`` on ``texts``; the same texts give the same
    tokenizer.json in every process.

    The ``tokenizers`` trainer numbers the '##c' pieces in hash order (a new order in each process) and
    breaks count ties by id, so the vocabulary itself changed from run to run. Passing every '##c' piece,
    sorted, among the trainer's special tokens numbers them first in a fixed order; they are then made
    ordinary vocabulary again. ``texts`` is read twice (a one-shot iterator is read into a list first).
    """
    if iter(texts) is texts:
        texts = list(texts)
    trained = _bert_pipeline(models.WordPiece(unk_token="[UNK]"), lowercase)
    pieces = [PREFIX + c for c in _continuation_chars(trained, texts)]
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *pieces],
                                        continuing_subword_prefix=PREFIX)
    trained.train_from_iterator(texts, trainer=trainer)
    vocab = trained.get_vocab(with_added_tokens=False)
    tok = _bert_pipeline(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix=PREFIX), lowercase)
    tok.add_special_tokens(list(SPECIAL_TOKENS))  # the real special tokens only: the pieces stay ordinary
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix=PREFIX)
    return tok


def train_wordpiece(texts: Iterable[str], vocab_size: int, lowercase: bool = True) -> PreTrainedTokenizerFast:
    """:func:`train_wordpiece_backend` wrapped as a transformers fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=train_wordpiece_backend(texts, vocab_size, lowercase),
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


class MDSTexts:
    """The ``text`` column of a local MDS split as an iterable that can be read more than once."""

    def __init__(self, folder: str, limit: int | None = None):
        self.folder, self.limit = folder, limit

    def __iter__(self) -> Iterator[str]:
        return iter_mds_texts(self.folder, self.limit)


def data_tokenizer_meta(split: str, vocab_size: int, lowercase: bool) -> dict[str, Any]:
    """The ``trained_tokenizer`` record of ``bertforge_meta.json``: where the tokenizer is and how it was trained."""
    return {"path": DATA_TOKENIZER_DIR, "split": split, "vocab_size": vocab_size, "lowercase": lowercase}


def data_tokenizer(local: str, train_folder: str, vocab_size: int, lowercase: bool,
                   max_docs: int | None) -> str | None:
    """The folder of the tokenizer ``convert_dataset.py --train-tokenizer`` stored with the MDS data at ``local``
    when it is the one a run would train (on ``train_folder`` with these settings, all documents), else None."""
    record = read_meta(local).get("trained_tokenizer")
    if not record or max_docs is not None:
        return None
    if record.get("also"):  # a run would train on the split alone; that tokenizer is used by naming it
        log.info("tokenizer: the one stored with %s also learned from %s; a run uses it only with tokenizer.name: "
                 "%s", local, ", ".join(record["also"]), os.path.join(local, record.get("path", DATA_TOKENIZER_DIR)))
        return None
    trained_on = os.path.normpath(split_dir(local, record.get("split")))
    if (trained_on, record.get("vocab_size"), record.get("lowercase")) != (
            os.path.normpath(train_folder), vocab_size, lowercase):
        return None
    folder = os.path.join(local, record.get("path", DATA_TOKENIZER_DIR))
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        raise UserError(f"{local}/bertforge_meta.json names the tokenizer {folder}, which is missing; "
                        "re-run convert_dataset.py --train-tokenizer")
    return folder


def tokenizer_for_run(name: str | None, train_folder: str, save_dir: str, vocab_size: int, lowercase: bool,
                      max_docs: int | None, data_root: str | None = None) -> PreTrainedTokenizerBase:
    """The run's tokenizer: loaded when ``name`` is set; else reused from ``save_dir`` when an earlier attempt
    of this run saved it, else the one stored with the MDS data at ``data_root`` when it is the one this run
    would train (:func:`data_tokenizer`), else trained on ``train_folder``; saved to ``save_dir``."""
    if name:
        return load_tokenizer(name)
    settings = {"vocab_size": vocab_size, "lowercase": lowercase, "max_train_docs": max_docs}
    record = os.path.join(save_dir, TRAINED_WITH)
    if os.path.isfile(os.path.join(save_dir, "tokenizer.json")):
        _check_saved_settings(record, settings, save_dir)
        return load_tokenizer(save_dir, key="tokenizer (saved with the run)")
    from_data = data_root and data_tokenizer(data_root, train_folder, vocab_size, lowercase, max_docs)
    if from_data:
        log.info("tokenizer: the one trained with the data, %s", from_data)
        tok = load_tokenizer(from_data, key="tokenizer (trained with the data)")
    else:
        log.info("tokenizer: training a %d-token WordPiece tokenizer on %s", vocab_size, train_folder)
        tok = train_wordpiece(MDSTexts(train_folder, max_docs), vocab_size, lowercase)
    tok.save_pretrained(save_dir)
    with open(record, "w", encoding="utf-8") as f:
        json.dump(settings, f)
    return tok


TRAINED_WITH = "bertforge_trained_with.json"
"""Beside a tokenizer a run trained (or took from its data): the ``tokenizer`` settings it was made with."""


def _check_saved_settings(record: str, settings: dict[str, Any], save_dir: str) -> None:
    """Refuse (one line) reusing an earlier attempt's tokenizer when the YAML now asks for another one."""
    if not os.path.isfile(record):  # saved before the settings were recorded: nothing to compare
        return
    with open(record, encoding="utf-8") as f:
        saved = json.load(f)
    for key, value in settings.items():
        if key in saved and saved[key] != value:
            raise UserError(f"tokenizer.{key}: {value!r}, but an earlier attempt of this run saved a tokenizer made "
                            f"with {saved[key]!r} in {save_dir}; use another run_dir, delete that folder, or set "
                            f"tokenizer.{key}: {saved[key]!r}")
