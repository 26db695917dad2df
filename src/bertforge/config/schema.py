"""The typed schema of a training YAML. Each field documents one key; checks live in __post_init__."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from bertforge.errors import ConfigError

_TIME_UNITS = ("ep", "ba", "sp", "tok", "dur")


def check_time(key: str, value: str | int, allow_dur: bool = True) -> None:
    """Check a Composer time string such as ``1000ba``, ``2ep`` or ``0.06dur``."""
    text = str(value).strip()
    unit = next((u for u in _TIME_UNITS if text.endswith(u)), None)
    number = text[: -len(unit)] if unit else ""
    try:
        ok = unit is not None and float(number) >= 0 and (allow_dur or unit != "dur")
    except ValueError:
        ok = False
    if not ok:
        units = [u for u in _TIME_UNITS if allow_dur or u != "dur"]
        if unit == "dur" and not allow_dur:
            raise ConfigError(key, f"{value!r} is a fraction of the run's length and cannot set it; give a unit from "
                              f"{units}, e.g. '1000ba'")
        raise ConfigError(key, f"{value!r} is not a time; write a number and a unit from {units}, e.g. '1000ba'")


def _time_unit(value: str | int) -> str:
    """The unit of a time string already checked by :func:`check_time`."""
    text = str(value).strip()
    return next(u for u in _TIME_UNITS if text.endswith(u))


def _time_value(value: str | int) -> float:
    """The number of a time string already checked by :func:`check_time`."""
    text = str(value).strip()
    return float(text[: -len(_time_unit(text))])


_WEIGHTS = ("proportion", "repeat", "choose")
DEFAULT_MLM_PROBABILITY = 0.15
DEFAULT_PACKING_LOOKAHEAD = 8


@dataclass
class StreamConfig:
    """One source of a dataset mixture, handed to mosaicml-streaming's ``Stream``: its folders and its weight."""

    local: str
    """Local MDS folder; with ``remote``, the cache folder the remote's shards are downloaded to."""
    remote: str | None = None
    """Optional remote to stream from (s3://, gs://, ..., file:// or a local path)."""
    split: str | None = None
    """Subfolder of ``local``/``remote``; defaults to the dataset block's ``split``."""
    proportion: float | None = None
    """Relative weight: this source's share of an epoch. Either every stream gives one or none does."""
    repeat: float | None = None
    """Absolute weight: samples per epoch as a multiple of this source's size (0.5 = half, 2 = twice)."""
    choose: int | None = None
    """Absolute weight: exactly this many samples per epoch from this source."""
    download_retry: int | None = None
    """Download attempts for this source's shards (the dataset block's when null)."""
    download_timeout: float | None = None
    """Seconds to wait for one of this source's shards (the dataset block's when null)."""

    def __post_init__(self) -> None:
        given = [k for k in _WEIGHTS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(given[1], f"a stream takes at most one of proportion, repeat, choose (this one has "
                              f"{' and '.join(given)}); keep one")
        for name in given:
            if getattr(self, name) < 0:
                raise ConfigError(name, f"{getattr(self, name)} must be >= 0")
        if self.download_timeout is not None and self.download_timeout <= 0:
            raise ConfigError("download_timeout", f"{self.download_timeout} must be > 0 seconds")

    @property
    def weight(self) -> str | None:
        """Which weight key this stream sets (None: none)."""
        return next((k for k in _WEIGHTS if getattr(self, k) is not None), None)


@dataclass
class DatasetConfig:
    """Where the MDS data lives (one ``local``/``remote`` folder, or a ``streams`` mixture) and how to stream it."""

    local: str | None = None
    """Local folder holding the MDS shards (with ``split`` as a subfolder when set); the cache with ``remote``."""
    remote: str | None = None
    """Optional remote (s3://, gs://, oci://, azure://, hf://, sftp://, file:// or a local path) to stream from
    into ``local``."""
    split: str | None = None
    """Subfolder of ``local``/``remote`` for this split (``train``, ``val``); with ``streams``, each stream's
    default."""
    streams: list[StreamConfig] = field(default_factory=list)
    """A mixture of sources, each ``{local, remote, split, proportion | repeat | choose}``, sampled by
    mosaicml-streaming (instead of ``local``/``remote``). With no weights every sample of every source is seen
    once per epoch. Empty: the one ``local``/``remote`` source."""
    epoch_size: int | None = None
    """Samples per epoch (all ranks) drawn from the sources by proportion (or by size when no stream has a
    weight); the sources' total when null. Not with repeat/choose weights."""
    shuffle: bool = False
    """Shuffle samples (the train split should)."""
    shuffle_seed: int | None = None
    """Seed of the shuffle; defaults to the run's ``seed``."""
    shuffle_algo: str = "py1e"
    """mosaicml-streaming shuffle algorithm."""
    predownload: int | None = None
    """Samples to download ahead per worker (streaming's default when null)."""
    cache_limit: str | int | None = None
    """Upper bound on the local cache when streaming from a remote, e.g. '10gb'; the coldest shards are evicted
    from the local cache to stay under it."""
    download_retry: int = 2
    """Download attempts per shard from a remote before failing."""
    download_timeout: float = 60.0
    """Seconds to wait for one shard (or index) to download before failing."""
    validate_hash: str | None = None
    """Check each shard with this hash from the index (e.g. 'sha1', 'xxh64'; as written by the converter)."""

    def __post_init__(self) -> None:
        if self.download_timeout <= 0:
            raise ConfigError("download_timeout", f"{self.download_timeout} must be > 0 seconds")
        if self.download_retry < 0:
            raise ConfigError("download_retry", f"{self.download_retry} must be >= 0")
        if self.epoch_size is not None and self.epoch_size < 1:
            raise ConfigError("epoch_size", f"{self.epoch_size} must be >= 1")
        if self.shuffle_seed is not None and not self.shuffle:
            raise ConfigError("shuffle_seed", "only applies with shuffle: true; set shuffle: true or drop shuffle_seed")
        if self.streams:
            self._check_streams()
        elif self.local is None:
            raise ConfigError("local", "required key is missing; give local (one MDS folder) or streams "
                              "(a mixture of sources)")
        if self.cache_limit is not None:
            self._check_cache_limit()

    def _check_cache_limit(self) -> None:
        """Streaming evicts cold shards of every source to stay under ``cache_limit``: each needs a remote copy."""
        sources = [(f"streams[{i}]", s.local, s.remote) for i, s in enumerate(self.streams)] or [
            ("", self.local, self.remote)]
        for key, local, remote in sources:
            where = f"{key}.remote" if key else "remote"
            if remote is None or os.path.normpath(remote.removeprefix("file://")) == os.path.normpath(local):
                raise ConfigError(where, "has no remote copy of its data, but cache_limit evicts shards of every "
                                  "source from local (deleting the only copy); give it a remote or drop cache_limit")

    def _check_streams(self) -> None:
        """The mixture rules of mosaicml-streaming, refused here with the stream's key."""
        for name in ("local", "remote"):
            if getattr(self, name) is not None:
                raise ConfigError(name, f"give either streams or {name}, not both; put {name} in each stream")
        seen: dict[tuple, int] = {}
        for i, stream in enumerate(self.streams):
            place = (os.path.normpath(stream.local), stream.split or self.split)
            if place in seen:
                raise ConfigError(f"streams[{i}].local", f"same folder and split as streams[{seen[place]}]; "
                                  "each stream needs its own (a remote's cache too)")
            seen[place] = i
        relative = self.streams[0].weight == "proportion"
        for i, stream in enumerate(self.streams):
            if (stream.weight == "proportion") != relative:
                key = f"streams[{i}].{stream.weight or 'proportion'}"
                raise ConfigError(key, "streams are weighted either all by proportion (relative) or by repeat/"
                                  "choose/nothing (absolute), never both; give every stream a proportion or none")
        if relative and sum(s.proportion for s in self.streams) <= 0:
            raise ConfigError("streams[0].proportion", "the proportions sum to 0; give some stream a weight > 0")
        absolute = [i for i, s in enumerate(self.streams) if s.weight in ("repeat", "choose")]
        if self.epoch_size is not None and absolute:
            raise ConfigError("epoch_size", f"sets the epoch size, but streams[{absolute[0]}] sets its own count by "
                              f"{self.streams[absolute[0]].weight}; drop one of them (or weight by proportion)")


@dataclass
class LoaderConfig:
    """One dataloader: its dataset, its collator, the MLM masking rate and torch DataLoader settings."""

    dataset: DatasetConfig
    collator: dict = field(default_factory=lambda: {"name": "mlm"})
    """Registry collator block ``{name: ..., **kwargs}``: turns samples into a batch. Its builder is also given the
    tokenizer, ``mlm_probability`` and whether masks must be deterministic (eval); ``mlm`` is BERT masking."""
    mlm_probability: float | None = None
    """Fraction of real tokens selected for masking (80% [MASK], 10% random, 10% kept), given to the collator;
    null: 0.15. Refused with a collator that draws its own masking rate per sequence (mdlm, sft)."""
    packing: bool = False
    """Pack documents into batches of a fixed token budget: each batch is exactly the device batch size in
    rows of max_seq_len slots, filled with whole documents; attention stays inside each document (needs a
    model that unpads: flexbert, m2_bert). Batch sizes then count rows; sample counts count documents."""
    packing_lookahead: int | None = None
    """With ``packing``: documents that may be set aside for a later batch while shorter ones behind them fill the
    current one (null: 8)."""
    num_workers: int = 0
    """DataLoader worker processes. Bit-exact resume of the masking needs 0."""
    drop_last: bool | None = None
    """Drop the last, short batch of an epoch (null: true for train_loader; an eval_loader always keeps it)."""
    pin_memory: bool = False
    prefetch_factor: int | None = None
    """Batches each worker loads ahead (needs num_workers > 0)."""
    persistent_workers: bool = False
    """Keep the workers alive between epochs (needs num_workers > 0)."""

    def __post_init__(self) -> None:
        if self.mlm_probability is not None and not 0.0 < self.mlm_probability < 1.0:
            raise ConfigError("mlm_probability", f"{self.mlm_probability} must be strictly between 0 and 1")
        if self.num_workers < 0:
            raise ConfigError("num_workers", f"{self.num_workers} must be >= 0")
        if self.packing_lookahead is not None:
            if self.packing_lookahead < 0:
                raise ConfigError("packing_lookahead", f"{self.packing_lookahead} must be >= 0")
            if not self.packing:
                raise ConfigError("packing_lookahead", "only applies with packing: true; set packing: true or "
                                  "drop packing_lookahead")
        workers_only = [k for k, v in (("prefetch_factor", self.prefetch_factor is not None),
                                       ("persistent_workers", self.persistent_workers)) if v]
        if workers_only and self.num_workers == 0:
            raise ConfigError(workers_only[0], "only applies to DataLoader worker processes and num_workers is 0; "
                              f"set num_workers > 0 or drop {workers_only[0]}")

    @property
    def effective_mlm_probability(self) -> float:
        """``mlm_probability``, or its default 0.15 when the YAML leaves it out."""
        return DEFAULT_MLM_PROBABILITY if self.mlm_probability is None else self.mlm_probability

    @property
    def effective_packing_lookahead(self) -> int:
        """``packing_lookahead``, or its default 8 when the YAML leaves it out."""
        return DEFAULT_PACKING_LOOKAHEAD if self.packing_lookahead is None else self.packing_lookahead


@dataclass
class TokenizerConfig:
    """The tokenizer: a Hugging Face name/path, or trained on the train split when ``name`` is null."""

    name: str | None = None
    """Hub name or local folder. Null trains a WordPiece tokenizer on the train split."""
    vocab_size: int = 8192
    """Vocabulary size of a tokenizer trained here (not used when ``name`` is set: one log line says so)."""
    lowercase: bool = True
    """Lowercase text in a tokenizer trained here (not used when ``name`` is set)."""
    max_train_docs: int | None = None
    """Cap on documents read to train the tokenizer (all when null; not used when ``name`` is set)."""

    def __post_init__(self) -> None:
        if self.vocab_size < 32:
            raise ConfigError("vocab_size", f"{self.vocab_size} is too small; use at least 32")


@dataclass
class TrainConfig:
    """A whole pretraining run. Component blocks (model, optimizer, ...) are ``{name: ..., **kwargs}``."""

    model: dict
    """Registry model block, e.g. ``{name: hf_bert, model_config: {...}}``."""
    train_loader: LoaderConfig
    max_duration: str
    """Training length as a Composer time: '1000ba', '1ep', '10000000tok'."""
    code_paths: list[str] = field(default_factory=list)
    """Python files imported before validation, so that the components they register (``@registry.models.register
    ("toy")``, optimizers, callbacks, ...) can be named in this YAML. Paths are relative to the working directory."""
    max_seq_len: int = 128
    """Tokens per sequence, [CLS] and [SEP] included; longer documents are truncated."""
    run_name: str = "bertforge-run"
    run_dir: str = "runs/{run_name}"
    """Folder for this run's tokenizer, resolved config, checkpoints and exports."""
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    eval_loader: LoaderConfig | None = None
    optimizer: dict = field(
        default_factory=lambda: {"name": "decoupled_adamw", "lr": 5.0e-4, "weight_decay": 1.0e-5}
    )
    scheduler: dict = field(default_factory=lambda: {"name": "linear_decay_with_warmup", "t_warmup": "0.06dur"})
    global_train_batch_size: int = 32
    """Sequences per optimizer step across all processes."""
    device_train_microbatch_size: int | Literal["auto"] = "auto"
    """Sequences per forward/backward on one device; 'auto' lets Composer pick (GPU) or uses the batch."""
    device_eval_batch_size: int = 64
    eval_interval: str = "500ba"
    eval_first: bool = False
    """Evaluate once before training so the log shows the starting eval loss."""
    eval_subset_num_batches: int = -1
    """Cap on eval batches per evaluation (-1: the whole eval split)."""
    seed: int = 17
    deterministic: bool = False
    """Composer deterministic mode (slower; exact reproducibility)."""
    precision: Literal["fp32", "amp_bf16", "amp_fp16", "amp_fp8"] | None = None
    """Null picks amp_bf16 on a GPU that supports it, else fp32."""
    device: Literal["cpu", "gpu"] | None = None
    """Null picks gpu when CUDA is available."""
    compile_model: bool = False
    """torch.compile the model (inductor); skipped with a one-line note where compile cannot run."""
    grad_clip_norm: float | None = None
    """Clip the gradient norm to this value (no clipping when null)."""
    save_folder: str | None = "{run_dir}/checkpoints"
    save_interval: str = "1000ba"
    save_num_checkpoints_to_keep: int = -1
    save_overwrite: bool = False
    autoresume: bool = False
    """Resume from the newest checkpoint in ``save_folder`` when one exists."""
    load_path: str | None = None
    """Checkpoint to start from (ignored by autoresume once the run has its own checkpoint)."""
    load_weights_only: bool = False
    progress_bar: bool = True
    log_to_console: bool = True
    console_log_interval: str = "50ba"
    callbacks: list[dict] = field(default_factory=list)
    """Registry callback blocks, e.g. ``[{name: lr_monitor}, {name: hf_export}]``."""
    loggers: list[dict] = field(default_factory=list)
    """Registry logger blocks, e.g. ``[{name: tensorboard}]``."""
    python_log_level: str | None = None
    dist_timeout: float = 300.0
    parallelism: dict | None = None
    """``{fsdp: {...}}``: shard with Composer's FSDP (sharding_strategy, mixed_precision, state_dict_type,
    activation_cpu_offload, ...; checked by bertforge/parallel.py). Null: DDP across processes."""
    phases: list[dict] = field(default_factory=list)
    """Consecutive training phases, each ``{name, share, ...keys it changes}`` (see bertforge.phases); empty: one."""

    def __post_init__(self) -> None:
        for key in ("max_duration", "eval_interval", "save_interval", "console_log_interval"):
            check_time(key, getattr(self, key), allow_dur=key != "max_duration")  # max_duration defines 1dur
        if self.max_seq_len < 8:
            raise ConfigError("max_seq_len", f"{self.max_seq_len} is too short; use at least 8")
        if self.global_train_batch_size < 1:
            raise ConfigError("global_train_batch_size", "must be >= 1")
        micro = self.device_train_microbatch_size
        if micro != "auto" and micro < 1:
            raise ConfigError("device_train_microbatch_size", f"{micro} must be >= 1 or 'auto'")
        if self.autoresume and not self.save_folder:
            raise ConfigError("autoresume", "needs save_folder to be set: that is where it looks for checkpoints")
        self._check_unused()

    def _check_unused(self) -> None:
        """Refuse keys that would be accepted and then have no effect, or that Composer would refuse only later (the
        deliberate cases are said by :func:`config_notices`)."""
        if _time_unit(self.console_log_interval) not in ("ba", "ep"):
            raise ConfigError("console_log_interval", f"{self.console_log_interval!r}: Composer's console logger "
                              "counts in batches or epochs; give e.g. '50ba'")
        never = {"save_interval": "saves no checkpoint, not even the final one; set save_folder: null to save nothing",
                 "eval_interval": "never evaluates; set eval_loader: null to skip evaluation"}
        for key, what in never.items():
            if _time_value(getattr(self, key)) == 0:
                raise ConfigError(key, f"{getattr(self, key)!r} {what}")
        if self.grad_clip_norm is not None and self.grad_clip_norm <= 0:
            raise ConfigError("grad_clip_norm", f"{self.grad_clip_norm} would scale every gradient to 0; give a norm "
                              "> 0, or null for no clipping")
        if self.eval_subset_num_batches == 0 or self.eval_subset_num_batches < -1:
            raise ConfigError("eval_subset_num_batches", f"{self.eval_subset_num_batches} must be -1 (the whole eval "
                              "split) or >= 1")
        if self.eval_loader is not None and self.eval_loader.drop_last:
            raise ConfigError("eval_loader.drop_last", "evaluation always scores every sample, the last short batch "
                              "too; drop the key")
        if self.load_weights_only and not self.load_path:
            raise ConfigError("load_weights_only", "there is no load_path to take weights from; set load_path or "
                              "drop load_weights_only")


def config_notices(raw: dict, cfg: TrainConfig) -> list[str]:
    """One line for each key of the YAML (``raw``) that is accepted but deliberately not used in ``cfg``: the
    training options of a tokenizer that is loaded by name (e.g. a run's saved tokenizer given on the command line
    of a YAML that trains one), and ``eval_first`` without an eval_loader."""
    notes = []
    given = raw.get("tokenizer") or {}
    unused = [k for k in ("vocab_size", "lowercase", "max_train_docs") if given.get(k) is not None]
    if cfg.tokenizer.name and unused:
        values = ", ".join(f"{k}={given[k]}" for k in unused)
        notes.append(f"tokenizer: {values} only shape a tokenizer trained here; '{cfg.tokenizer.name}' is loaded as "
                     "it is, so they are not used")
    if cfg.eval_first and cfg.eval_loader is None:
        notes.append("eval_first: there is no eval_loader, so nothing is evaluated before training")
    return notes
