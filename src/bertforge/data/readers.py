"""Input readers of ``convert_dataset.py``: text files, JSON/JSONL files, folders of them, saved or Hub
``datasets``, as documents (or SFT conversations), planned into per-split jobs; and the extra texts a trained
tokenizer also reads (``--tokenizer-also``)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bertforge.data import sft as sft_data
from bertforge.data.json_lines import json_lines
from bertforge.errors import UserError

HF_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")
JSONL_SUFFIXES = (".jsonl", ".json")
SPLIT_ALIASES = {"val": ("validation", "valid", "dev"), "validation": ("val", "valid", "dev")}
CHAT_KEYS = ("messages", "instruction")

Reader = Callable[[], Iterator[str]]


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]


def _read_text(path: Path, doc_separator: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        if doc_separator == "line":
            for line in fh:
                yield line.rstrip("\n")
            return
        block: list[str] = []
        for line in fh:
            line = line.rstrip("\n")
            if line.strip():
                block.append(line)
            elif block:
                yield "\n".join(block)
                block = []
        if block:
            yield "\n".join(block)


def _read_jsonl(path: Path, field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as fh:
        for lineno, obj in json_lines(fh, path):
            if not isinstance(obj, dict) or field not in obj:
                found = ", ".join(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
                raise UserError(f"{path}:{lineno}: no field '{field}' (found: {found}); "
                                "pass --text-field NAME")
            value = obj[field]
            if value is not None and not isinstance(value, str):
                raise UserError(f"{path}:{lineno}: field '{field}' is {type(value).__name__}, "
                                "expected a string; pass the right --text-field")
            if value is not None:
                yield value


def _file_reader(path: Path, field: str | None, doc_separator: str) -> Reader:
    def read() -> Iterator[str]:
        try:
            if field is None:  # --sft: conversations instead of texts
                yield from sft_data.read_sft_file(path)
            elif path.suffix.lower() in JSONL_SUFFIXES:
                yield from _read_jsonl(path, field)
            else:
                yield from _read_text(path, doc_separator)
        except UnicodeDecodeError as err:
            raise UserError(f"{path}: not UTF-8 text ({err.reason}); convert the file to UTF-8") from None

    return read


def _dataset_reader(label: str, ds: Any, field: str | None) -> Reader:
    if field is None:  # --sft
        return lambda: sft_data.dataset_conversations(label, ds)
    if field not in ds.column_names:
        raise UserError(f"{label}: dataset has no column '{field}' "
                        f"(columns: {', '.join(ds.column_names)}); pass --text-field NAME")

    def read() -> Iterator[str]:
        for batch in ds.select_columns([field]).iter(batch_size=1000):
            for value in batch[field]:
                if value is not None and not isinstance(value, str):
                    raise UserError(f"{label}: column '{field}' holds {type(value).__name__}, expected text")
                if value is not None:
                    yield value

    return read


def iter_docs(readers: Iterable[Reader]) -> Iterator[str]:
    """All non-empty documents (or SFT conversations) of ``readers``, in order."""
    for read in readers:
        for doc in read():
            if not isinstance(doc, str) or doc.strip():
                yield doc


@contextlib.contextmanager
def quiet_hub() -> Iterator[None]:
    """Hide huggingface_hub's per-retry warnings; a failure becomes one UserError line instead."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def _load_saved(path: Path) -> Any:
    import datasets

    try:
        return datasets.load_from_disk(str(path))
    except Exception as err:  # any failure here means a bad folder
        raise UserError(f"{path}: cannot load this saved datasets folder ({_first_line(err)}); "
                        "re-create it with Dataset.save_to_disk") from None


def _load_hub(name: str, config: str | None) -> Any:
    import datasets

    try:
        with quiet_hub():
            return datasets.load_dataset(name, config)
    except Exception as err:  # network, auth, unknown name: all fixable by the user
        raise UserError(f"--hf-dataset {name}: cannot load it from the Hub ({_first_line(err)}); this "
                        "needs network access, or save a local copy with save_to_disk and pass --input "
                        "FOLDER") from None


def _resolve(raw: str, flag: str) -> list[tuple[str, Any]]:
    """Expand one input path into (label, Path or datasets object) items."""
    path = Path(raw).expanduser()
    if not path.exists():
        raise UserError(f"{flag} {raw}: no such file or folder; check the path")
    if path.is_dir() and any((path / m).is_file() for m in HF_MARKERS):
        return [(str(path), _load_saved(path))]
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file()
                 and not any(part.startswith(".") for part in f.relative_to(path).parts)]
        if not files:
            raise UserError(f"{flag} {raw}: the folder holds no files; put .txt/.jsonl files in it")
        return [(str(f), f) for f in sorted(files, key=lambda f: f.relative_to(path).as_posix())]
    return [(str(path), path)]


def _split_key(dd: dict, name: str) -> str | None:
    """The DatasetDict split that serves our split ``name`` ('val' also matches 'validation')."""
    return next((key for key in (name, *SPLIT_ALIASES.get(name, ())) if key in dd), None)


def _item_reader(label: str, obj: Any, want: str, field: str, doc_separator: str) -> Reader:
    if isinstance(obj, Path):
        return _file_reader(obj, field, doc_separator)
    if isinstance(obj, dict):  # a DatasetDict
        key = _split_key(obj, want) or (next(iter(obj)) if len(obj) == 1 else None)
        if key is None:
            raise UserError(f"{label}: dataset has no split '{want}' (splits: {', '.join(obj)}); "
                            "choose with --split-input SPLIT=PATH or --splits")
        return _dataset_reader(f"{label}[{key}]", obj[key], field)
    return _dataset_reader(label, obj, field)


def plan_jobs(inputs: list[str], split_inputs: dict[str, list[str]] | None, hf: tuple[str, str | None] | None,
          splits: list[str], field: str, sep: str) -> list[tuple[str | None, list[Reader]]]:
    """Jobs as (split, readers); split None means: cut the documents into ``splits`` by the val ratio."""
    if split_inputs:
        return [(name, [_item_reader(label, obj, name, field, sep)
                        for raw in paths for label, obj in _resolve(raw, f"--split-input {name}=")])
                for name, paths in split_inputs.items()]
    if hf:
        items = [(f"hf:{hf[0]}", _load_hub(*hf))]
    else:
        items = [item for raw in inputs for item in _resolve(raw, "--input")]
    if len(items) == 1 and isinstance(items[0][1], dict):
        label, dd = items[0]
        keys = [_split_key(dd, s) for s in splits]
        if all(keys):  # a DatasetDict brings its own splits
            return [(s, [_dataset_reader(f"{label}[{k}]", dd[k], field)]) for s, k in zip(splits, keys)]
    readers = [_item_reader(label, obj, splits[0], field, sep) for label, obj in items]
    if len(splits) == 1:
        return [(splits[0], readers)]
    if len(splits) != 2:
        raise UserError(f"--splits {','.join(splits)}: a ratio split makes exactly two splits "
                        "(e.g. train,val); use --split-input SPLIT=PATH for more")
    return [(None, readers)]


def _is_chat_file(path: Path) -> bool:
    """Whether a JSON/JSONL file holds chat records (alpaca fields or a messages list) rather than texts."""
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.read(1 << 16).lstrip()
    except UnicodeDecodeError:
        return False  # the text reader names the problem
    if head.startswith("["):
        return True  # a JSON list: texts come one object a line, so only chat records arrive as a list
    try:
        first = json.loads(head.split("\n", 1)[0])
    except json.JSONDecodeError:
        return False
    return isinstance(first, dict) and any(key in first for key in CHAT_KEYS)


def _message_texts(path: Path) -> Reader:
    def read() -> Iterator[str]:
        for messages in sft_data.read_sft_file(path):
            for message in messages:
                yield message["content"]

    return read


def tokenizer_text_readers(paths: Sequence[str], field: str, doc_separator: str) -> list[Reader]:
    """Readers of the extra texts a trained tokenizer also learns from (``--tokenizer-also``): text files by
    ``doc_separator``, JSON/JSONL texts by ``field``, chat records (alpaca fields or a messages list) as the
    content of every message, saved ``datasets`` by ``field``. A missing path is refused here, before any work."""
    readers = []
    for raw in paths:
        for label, obj in _resolve(raw, "--tokenizer-also"):
            if isinstance(obj, Path) and obj.suffix.lower() in JSONL_SUFFIXES and _is_chat_file(obj):
                readers.append(_message_texts(obj))
            else:
                readers.append(_item_reader(label, obj, "train", field, doc_separator))
    return readers
