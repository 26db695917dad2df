"""Build a model from a YAML and measure it: one result row per mode x sequence length x input kind."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertforge import registry
from bertforge.bench.inputs import DISTRIBUTIONS, Batch, LengthSampler, corpus_lengths, make_batch
from bertforge.bench.report import model_label
from bertforge.bench.timing import PeakMemory, Timing, is_oom, time_calls
from bertforge.config import load_config
from bertforge.data.tokenizer import load_tokenizer
from bertforge.errors import UserError
from bertforge.models.flops import batch_flops, peak_flops
from bertforge.models.params import count_params, inner_module
from bertforge.runtime import configure_logging, default_precision, device_name
from bertforge.train import compile_unavailable_reason

log = logging.getLogger(__name__)


@dataclass
class Settings:
    """What to measure; one ``Settings`` for the whole sweep."""

    seq_lens: list[int]
    modes: list[str] = field(default_factory=lambda: ["forward"])
    inputs: list[str] = field(default_factory=lambda: ["fixed", "variable"])
    batch_size: int | str | None = None  # int, 'auto', or None: the YAML's device_train_microbatch_size
    max_auto_batch: int | None = None  # cap of 'auto' (GPU: doubling stops here; CPU: used as is)
    repeats: int = 10
    warmup: int = 3
    precision: str | None = None
    device: str | None = None
    pad_to: str = "longest"
    peak_tflops: float | None = None
    vocab_size: int | None = None
    seed: int = 0
    length_dist: str = "uniform"  # a name from inputs.DISTRIBUTIONS, or a text file / MDS split
    checkpointing: list[str] = field(default_factory=lambda: ["off"])  # off and/or on: activation checkpointing
    compile: list[str] = field(default_factory=lambda: ["off"])  # off and/or on: torch.compile as Composer does
    sampler: LengthSampler | None = None  # set per model by run_model (corpus lengths need its tokenizer)


class StandInTokenizer:
    """What the model builders need from a tokenizer, for benchmarks run without the real one."""

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size
        self.pad_token_id, self.unk_token_id, self.cls_token_id, self.sep_token_id, self.mask_token_id = range(5)

    def __len__(self) -> int:
        return self.vocab_size


def _is_local(name: str) -> bool:
    """A folder, or a Hub name whose tokenizer files are already in the HF cache (the benchmark never downloads)."""
    if os.path.isdir(name):
        return True
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(name, f), str) for f in ("tokenizer_config.json", "tokenizer.json"))


def load_tokenizer_or_stand_in(cfg: Any, vocab_size: int | None) -> tuple[Any, bool]:
    """(tokenizer, is_real): the YAML's tokenizer when it is a local folder or in the HF cache, else a stand-in."""
    name = cfg.tokenizer.name
    why = "tokenizer.name is null" if not name else f"tokenizer '{name}' is not a local folder nor in the HF cache"
    if name and _is_local(name):
        try:
            return load_tokenizer(name), True
        except UserError as err:
            why = str(err)
    size = vocab_size or cfg.tokenizer.vocab_size
    log.info("note: %s; using a stand-in tokenizer with vocab_size=%d (set --vocab-size or tokenizer.name)", why, size)
    return StandInTokenizer(size), False


def resolve_device(settings: Settings, cfg: Any) -> torch.device:
    """``--device``, else the YAML's ``device``, else cuda when available."""
    name = device_name(settings.device or cfg.device, "--device" if settings.device else "device")
    return torch.device("cuda" if name == "gpu" else "cpu")


def resolve_precision(settings: Settings, cfg: Any, device: torch.device) -> str:
    """``--precision``, else the YAML's, else amp_bf16 on a bf16 GPU and fp32 otherwise (bf16 autocast also
    runs on CPU here, unlike in Composer's Trainer)."""
    precision = settings.precision or cfg.precision or default_precision(device.type == "cuda")
    if precision not in ("fp32", "amp_bf16"):
        raise UserError(f"--precision: {precision!r} is not supported by the benchmark; use fp32 or amp_bf16")
    return precision


class Case:
    """A built model, its optimizer and the step functions that the timer calls."""

    def __init__(self, model: Any, optimizer: Any, device: torch.device, precision: str):
        self.model, self.optimizer, self.device, self.precision = model, optimizer, device, precision
        self.compiled = False  # compiled forward: each case first runs one batch, untimed and unmeasured

    def autocast(self):
        """bf16 autocast for ``amp_bf16``, else nothing."""
        if self.precision == "amp_bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, batch: Batch) -> None:
        """Eval-mode forward under ``torch.inference_mode``."""
        self.model.eval()
        with torch.inference_mode(), self.autocast():
            self.model(batch.tensors)

    def train_step(self, batch: Batch) -> None:
        """Forward, loss, backward and optimizer step."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = self.model(batch.tensors)
            loss = self.model.loss(outputs, batch.tensors)
        loss.backward()
        self.optimizer.step()


def compile_as_composer(model: torch.nn.Module) -> None:
    """Compile ``model``'s forward in place as Composer's Trainer does for ``compile_model: true``."""
    compiled = torch.compile(model)
    model.forward = compiled.dynamo_ctx(model.forward)


def build_case(yaml: str, overrides: list[str], settings: Settings, compiled: bool = False) -> tuple[Case, Any, Any]:
    """Load ``yaml`` with ``overrides``, build its model (compiled when asked) and optimizer on the device.

    Returns (case, config, the real tokenizer or None when a stand-in was used). Status messages follow the
    YAML's ``python_log_level``.
    """
    cfg = load_config(yaml, overrides)
    configure_logging(cfg.python_log_level)
    registry.models.validate(cfg.model, "model")
    registry.optimizers.validate(cfg.optimizer, "optimizer")
    device = resolve_device(settings, cfg)
    precision = resolve_precision(settings, cfg, device)
    torch.manual_seed(cfg.seed)
    tokenizer, real = load_tokenizer_or_stand_in(cfg, settings.vocab_size)
    model = registry.models.build(cfg.model, "model", tokenizer).to(device)
    if compiled:
        reason = compile_unavailable_reason(device)
        if reason:
            raise UserError(f"--compile on: {reason}")
        compile_as_composer(model)
    optimizer = registry.optimizers.build(cfg.optimizer, "optimizer", list(model.named_parameters()))
    case = Case(model, optimizer, device, precision)
    case.compiled = compiled
    return case, cfg, tokenizer if real else None


def make_sampler(settings: Settings, tokenizer: Any) -> LengthSampler:
    """The variable-length sampler: a named distribution, or document lengths of a corpus."""
    if settings.length_dist in DISTRIBUTIONS:
        return LengthSampler(settings.length_dist, seed=settings.seed)
    lengths, note = corpus_lengths(settings.length_dist, tokenizer)
    if note:
        log.info("note: %s", note)
    return LengthSampler(settings.length_dist, lengths, seed=settings.seed)


def model_limits(case: Case) -> tuple[int | None, int, int]:
    """(max_position_embeddings or None, vocab size, pad id) read from the model's config."""
    config = getattr(inner_module(case.model), "config", None)
    vocab = getattr(config, "vocab_size", None) or 30522  # BERT's, for a family whose config does not say
    pad = getattr(config, "pad_token_id", None) or 0
    return getattr(config, "max_position_embeddings", None), int(vocab), int(pad)


def _batches(case: Case, settings: Settings, kind: str, seq_len: int, batch_size: int, train: bool) -> list[Batch]:
    _, vocab, pad = model_limits(case)
    out = []
    for i in range(settings.warmup + settings.repeats):
        lengths = [seq_len] * batch_size if kind == "fixed" else settings.sampler.sample(batch_size, seq_len)
        out.append(make_batch(lengths, seq_len, vocab, pad, case.device, train, settings.pad_to, settings.seed + i))
    return out


def find_batch_size(case: Case, settings: Settings, seq_len: int, train: bool) -> int:
    """The largest power of two that runs (GPU, doubling until out-of-memory); on CPU the cap itself."""
    cap = settings.max_auto_batch or (1024 if case.device.type == "cuda" else 8)
    if case.device.type != "cuda":
        return cap
    step = case.train_step if train else case.forward
    _, vocab, pad = model_limits(case)
    size, fits = 1, 0
    while size <= cap:
        try:
            step(make_batch([seq_len] * size, seq_len, vocab, pad, case.device, train, seed=settings.seed))
            fits = size
            size *= 2
        except Exception as err:
            if not is_oom(err):
                raise
            break
        finally:
            _free(case)
    return fits


def _free(case: Case) -> None:
    """Drop gradients and cached device memory between cases (tensors are freed by reference counting)."""
    if case.optimizer is not None:
        case.optimizer.zero_grad(set_to_none=True)
    if case.device.type == "cuda":
        torch.cuda.empty_cache()


def measure(case: Case, settings: Settings, mode: str, kind: str, seq_len: int, batch_size: int) -> dict:
    """Time one mode x input kind x length; an out-of-memory becomes ``status='oom'``."""
    train = mode == "train"
    row: dict[str, Any] = {"mode": mode, "inputs": kind, "seq_len": seq_len, "batch_size": batch_size,
                           "precision": case.precision, "device": case.device.type,
                           "cpu_threads": torch.get_num_threads() if case.device.type == "cpu" else None}
    max_pos, _, _ = model_limits(case)
    if max_pos is not None and seq_len > max_pos:
        return {**row, "status": "too_long",
                "note": f"seq_len > max_position_embeddings={max_pos}; override "
                        f"model.model_config.max_position_embeddings={seq_len}"}
    if batch_size < 1:
        return {**row, "status": "oom", "note": "batch size 1 does not fit"}
    oom = ""
    try:
        batches = _batches(case, settings, kind, seq_len, batch_size, train)
        step = case.train_step if train else case.forward
        if case.compiled:  # compilation (time and memory) stays out of the measurement
            step(batches[0])
        with PeakMemory(case.device) as mem:
            timing = time_calls(lambda i: step(batches[i]), case.device, settings.repeats, settings.warmup)
    except Exception as err:
        if not is_oom(err):
            raise
        oom = (str(err).splitlines() or ["out of memory"])[0][:120]
    _free(case)  # outside the except block, so that the error's frames (and their tensors) are gone
    if oom:
        return {**row, "status": "oom", "note": oom}
    timed = batches[settings.warmup:]
    return {**row, **_stats(case, settings, timed, timing, train), "peak_mem_mib": mem.mib, "mem_kind": mem.kind}


def _stats(case: Case, settings: Settings, batches: list[Batch], timing: Timing, train: bool) -> dict:
    total, nonemb = count_params(inner_module(case.model))
    real = [b.real_tokens for b in batches]
    rates = [r / (t / 1e3) for r, t in zip(real, timing.times_ms)]
    flops = [batch_flops(case.model, b.lengths, train, nonemb) for b in batches]
    achieved = sum(flops) / (sum(timing.times_ms) / 1e3)
    peak = peak_flops(case.precision, case.device, settings.peak_tflops)
    return {
        "status": "ok", "ms_median": timing.median, "ms_min": timing.min, "ms_max": timing.max,
        "real_tokens_per_batch": sum(real) / len(real),
        "padded_tokens_per_batch": sum(b.padded_tokens for b in batches) / len(batches),
        "tokens_per_s": statistics.median(rates),
        "seqs_per_s": len(batches[0].lengths) / (timing.median / 1e3),
        "params": total, "params_nonembedding": nonemb,
        "tflops_per_s": achieved / 1e12, "mfu": achieved / peak if peak else None,
    }


def model_name(yaml: str) -> str:
    """The row label of a YAML: its file name without extension."""
    return Path(yaml).stem


def batch_size_for(case: Case, cfg: Any, settings: Settings, seq_len: int, train: bool) -> int:
    """``--batch-size`` (int or 'auto'), else the YAML's ``device_train_microbatch_size``."""
    size = settings.batch_size if settings.batch_size is not None else cfg.device_train_microbatch_size
    return find_batch_size(case, settings, seq_len, train) if size == "auto" else int(size)


CHECKPOINTING_KEY = "model.model_config.activation_checkpointing"


def run_model(yaml: str, overrides: list[str], settings: Settings) -> list[dict]:
    """Every variant (activation checkpointing off/on x compile off/on, each a freshly built model with the
    same seed) x mode x length x input kind of one YAML; rows carry the model name, YAML path and variant."""
    rows = []
    for checkpointing in settings.checkpointing:
        for compiled in settings.compile:
            extra = [f"{CHECKPOINTING_KEY}=true"] if checkpointing == "on" else []
            variant = {"act_ckpt": checkpointing, "compiled": compiled}
            rows += _run_variant(yaml, [*overrides, *extra], settings, variant)
    return rows


def _run_variant(yaml: str, overrides: list[str], settings: Settings, variant: dict) -> list[dict]:
    """Every mode x length x input kind of one built model; each measured case is logged (INFO) as it finishes."""
    case, cfg, tokenizer = build_case(yaml, overrides, settings, variant["compiled"] == "on")
    if "variable" in settings.inputs:
        settings.sampler = make_sampler(settings, tokenizer)
    rows = []
    for mode in settings.modes:
        for seq_len in settings.seq_lens or [cfg.max_seq_len]:
            try:
                size = batch_size_for(case, cfg, settings, seq_len, mode == "train")
            except Exception as err:
                if not is_oom(err):
                    raise
                size = 0
            for kind in settings.inputs:
                row = {"model": model_name(yaml), "yaml": str(yaml), **variant,
                       **measure(case, settings, mode, kind, seq_len, size)}
                log.info("%s", progress_line(row))
                rows.append(row)
    del case
    gc.collect()
    return rows


def progress_line(row: dict) -> str:
    """One line per measured case, for the console."""
    head = f"{model_label(row)} {row['mode']} L={row['seq_len']} {row['inputs']} bs={row['batch_size']}"
    if row["status"] != "ok":
        return f"{head}: {row['status'].upper()} {row.get('note', '')}"
    return (f"{head}: {row['ms_median']:.1f} ms [{row['ms_min']:.1f}-{row['ms_max']:.1f}], "
            f"{row['tokens_per_s']:,.0f} real tok/s, peak {row['peak_mem_mib']:.0f} MiB")
