"""Build a Composer Trainer from a validated config, and run pretraining."""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import logging
import os
import shutil
from dataclasses import asdict
from typing import Any

import torch
from composer import Trainer
from composer.algorithms import GradientClipping
from composer.core import Algorithm, Callback, DataSpec, Evaluator
from composer.devices import DeviceCPU, DeviceGPU
from composer.utils import dist, reproducibility
from omegaconf import OmegaConf

from bertforge import registry
from bertforge.callbacks.builtin import HuggingFaceExport
from bertforge.callbacks.resume_rng import ResumeRNG
from bertforge.callbacks.schedule_alignment import ScheduleAlignment
from bertforge.checkpoints import discard_incomplete_checkpoints, resolve_resume
from bertforge.config import TrainConfig, load_config
from bertforge.data.mds_checks import check_rows_fit, read_meta, split_dir
from bertforge.data.packing import documents_in_batch
from bertforge.data.sft import carry_chat_template
from bertforge.data.streams import check_sources, sources
from bertforge.data.text import build_collator, build_text_dataloader, check_eval_objective
from bertforge.data.tokenizer import check_pretrained_tokenizer, tokenizer_for_run, vocab_fingerprint
from bertforge.errors import ConfigError, UserError
from bertforge.models.export import export_refusal
from bertforge.models.params import describe_parameters
from bertforge.parallel import mark_fsdp_units, parallelism_config
from bertforge.phases import (
    Phase,
    PhaseMarker,
    check_handovers,
    handover_transform,
    is_done,
    mark_done,
    phase_scheduler,
    plan_phases,
    previous_checkpoint,
)
from bertforge.runtime import configure_logging, device_name, pick_device, pick_precision

log = logging.getLogger(__name__)


def expand_paths(value: Any, cfg: TrainConfig) -> Any:
    """Replace ``{run_dir}`` and ``{run_name}`` in every string inside ``value``."""
    if isinstance(value, str):
        return value.replace("{run_dir}", cfg.run_dir).replace("{run_name}", cfg.run_name)
    if isinstance(value, dict):
        return {k: expand_paths(v, cfg) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_paths(v, cfg) for v in value]
    return value


def validate(cfg: TrainConfig) -> None:
    """Check everything that can be checked before building: component blocks (after importing the YAML's
    ``code_paths``), each model's ``model_config``, and data folders."""
    cfg.run_dir = cfg.run_dir.replace("{run_name}", cfg.run_name)
    registry.import_code_paths(cfg.code_paths)
    registry.models.validate(cfg.model, "model")
    registry.optimizers.validate(cfg.optimizer, "optimizer")
    registry.schedulers.validate(cfg.scheduler, "scheduler")
    for i, spec in enumerate(cfg.callbacks):
        registry.callbacks.validate(spec, f"callbacks[{i}]")
    for i, spec in enumerate(cfg.loggers):
        registry.loggers.validate(spec, f"loggers[{i}]")
    if cfg.load_path and "://" not in cfg.load_path and not os.path.exists(expand_paths(cfg.load_path, cfg)):
        raise ConfigError("load_path", f"checkpoint not found: {cfg.load_path}; give an existing file or drop the key")
    world = dist.get_world_size()
    if cfg.global_train_batch_size % world:
        raise ConfigError(
            "global_train_batch_size", f"{cfg.global_train_batch_size} is not divisible by the {world} processes"
        )
    on_gpu = device_name(cfg.device) == "gpu"
    parallelism_config(cfg.parallelism, world, on_gpu, cfg.device_train_microbatch_size)  # checks the block
    loaders = [("train_loader", cfg.train_loader)] + ([("eval_loader", cfg.eval_loader)] if cfg.eval_loader else [])
    for name, loader in loaders:
        registry.collators.validate(loader.collator, f"{name}.collator")
        check_sources(loader.dataset, f"{name}.dataset")
        for src in sources(loader.dataset, f"{name}.dataset"):  # pairs, SFT rows and chunks are never cut
            check_rows_fit(src.data_dir, cfg.max_seq_len)


def loop_hooks(grad_clip_norm: float | None) -> tuple[list[Algorithm], list[Callback]]:
    """What every bertforge Composer run adds: gradient-norm clipping when a norm is given, and batch
    ``i`` trained at the schedule's value at ``i`` (:class:`ScheduleAlignment`)."""
    clip = [] if grad_clip_norm is None else [GradientClipping(clipping_type="norm", clipping_threshold=grad_clip_norm)]
    return clip, [ScheduleAlignment()]


def build_tokenizer(cfg: TrainConfig):
    """Load the configured tokenizer, or on rank 0 take the one trained with the data (when it matches) or train
    one, and load it on every other rank."""
    tok = cfg.tokenizer
    found = sources(cfg.train_loader.dataset, "train_loader.dataset")
    metas = [(src.data_dir, read_meta(src.data_dir)) for src in found]
    for folder, meta in metas:
        if tok.name is None and meta.get("tokenizer"):
            raise ConfigError("tokenizer.name",
                              f"{folder} holds ids from tokenizer '{meta['tokenizer']}'; set tokenizer.name to it")
    first = found[0]  # a tokenizer trained here (or stored with the data) comes from the first source
    args = (tok.name, split_dir(first.data_dir, first.split), os.path.join(cfg.run_dir, "tokenizer"),
            tok.vocab_size, tok.lowercase, tok.max_train_docs, first.data_dir)
    if dist.get_global_rank() == 0:
        tokenizer = tokenizer_for_run(*args)
    dist.barrier()
    if dist.get_global_rank() != 0:
        tokenizer = tokenizer_for_run(*args)
    check_data_tokenizer(cfg, tokenizer)
    carry_chat_template(tokenizer, metas)
    load_path = expand_paths(cfg.load_path, cfg) if cfg.load_path else None
    check_pretrained_tokenizer(tokenizer, tok.name, load_path, "tokenizer.name")  # weights from another run
    return tokenizer


def check_data_tokenizer(cfg: TrainConfig, tokenizer) -> None:
    """Refuse (one line) training or evaluating on token ids written by another tokenizer than the run's: its
    vocabulary or special-token ids differ (``tokenizer_fingerprint`` in the data's meta), or it has fewer tokens."""
    found = sources(cfg.train_loader.dataset, "train_loader.dataset")
    if cfg.eval_loader is not None:
        found += sources(cfg.eval_loader.dataset, "eval_loader.dataset")
    ours = None
    for src in found:
        meta = read_meta(src.data_dir)
        fix = f"set tokenizer.name to the tokenizer named in {src.data_dir}/bertforge_meta.json, or convert again"
        if meta.get("vocab_size") and meta["vocab_size"] > len(tokenizer):
            raise UserError(f"tokenizer.name: {src.data_dir} was tokenized with {meta['vocab_size']} tokens but "
                            f"'{cfg.tokenizer.name}' has {len(tokenizer)}; {fix}")
        if meta.get("tokenizer_fingerprint"):
            ours = ours or vocab_fingerprint(tokenizer)
            if meta["tokenizer_fingerprint"] != ours:
                raise UserError(f"tokenizer.name: {src.data_dir} holds ids of tokenizer '{meta.get('tokenizer')}', "
                                f"whose vocabulary or special tokens differ from '{cfg.tokenizer.name}'; {fix}")


def compile_unavailable_reason(device) -> str | None:
    """Why torch.compile cannot run here (None when it can): no dynamo, no C++ compiler, or no Triton."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/PyTorch build"
    if isinstance(device, DeviceCPU) and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")):
        return "no C++ compiler found for inductor's CPU backend"
    if isinstance(device, DeviceGPU) and importlib.util.find_spec("triton") is None:
        return "Triton is not installed"
    return None


def _data_spec(loader) -> DataSpec:
    return DataSpec(loader, get_num_tokens_in_batch=lambda batch: int((batch["attention_mask"] > 0).sum()),
                    get_num_samples_in_batch=documents_in_batch)


def training_objective(cfg: TrainConfig, tokenizer) -> str:
    """What the train collator asks the model to score (``mlm``, ``mdlm``, ``nsp``...)."""
    return getattr(build_collator(cfg.train_loader, tokenizer, True, "train_loader"), "objective", "mlm")


def check_learned_positions(model: torch.nn.Module, max_seq_len: int, key: str = "max_seq_len") -> None:
    """Refuse (one line) a ``max_seq_len`` longer than a learned position table of ``model`` (BERT's absolute
    positions), which would otherwise fail inside the first batch."""
    for name, module in model.named_modules():
        if name.endswith("position_embeddings") and isinstance(module, torch.nn.Embedding):
            if module.num_embeddings < max_seq_len:
                raise ConfigError(key, f"{max_seq_len} exceeds the model's {module.num_embeddings} learned "
                                  f"positions ({name}); lower max_seq_len or raise "
                                  "model.model_config.max_position_embeddings")


def build_model(cfg: TrainConfig, tokenizer, objective: str | None = None):
    """The registry model set up for ``objective`` (default: the train collator's), its size printed once;
    packing is refused for models that cannot unpad."""
    model = registry.models.build(cfg.model, "model", tokenizer, transform=lambda kw: expand_paths(kw, cfg))
    if dist.get_global_rank() == 0:
        log.info("model '%s': %s", cfg.model["name"], describe_parameters(model))
    check_learned_positions(model, cfg.max_seq_len)
    check_pretrained_tokenizer(tokenizer, cfg.tokenizer.name, getattr(model, "pretrained_source", None),
                               "tokenizer.name")
    objective = objective or training_objective(cfg, tokenizer)
    if cfg.eval_loader is not None:  # the model sets up its metrics once, for this objective
        check_eval_objective(objective, build_collator(cfg.eval_loader, tokenizer, False, "eval_loader"),
                             cfg.eval_loader)
    if hasattr(model, "set_objective"):  # e.g. mdlm: the eval ELBO metric (Composer reads metrics once, at init)
        model.set_objective(objective)
    loaders = (("train_loader", cfg.train_loader), ("eval_loader", cfg.eval_loader))
    packing = [name for name, loader in loaders if loader and loader.packing]
    if packing and not getattr(model, "supports_packing", False):
        raise ConfigError(f"{packing[0]}.packing", f"model '{cfg.model['name']}' cannot attend within packed "
                          "documents; use a model that unpads (flexbert) or set packing: false")
    exports = [i for i, spec in enumerate(cfg.callbacks) if spec.get("name") == "hf_export"]
    refusal = export_refusal(model) if exports else None
    if refusal:
        raise ConfigError(f"callbacks[{exports[0]}]", f"hf_export: this '{cfg.model['name']}' configuration has "
                          f"no Hugging Face equivalent ({refusal}); remove the callback")
    return model


def build_dataloaders(cfg: TrainConfig, tokenizer, device_batch: int,
                      train_collate=None) -> tuple[DataSpec, list[Evaluator]]:
    """The training DataSpec (batched by ``train_collate`` when given) and the eval Evaluator (if an eval_loader is
    configured)."""
    train_loader = build_text_dataloader(cfg.train_loader, tokenizer, cfg.max_seq_len, device_batch, cfg.seed, True,
                                         train_collate)
    evaluators = []
    if cfg.eval_loader is not None:
        eval_loader = build_text_dataloader(
            cfg.eval_loader, tokenizer, cfg.max_seq_len, cfg.device_eval_batch_size, cfg.seed, False
        )
        evaluators.append(Evaluator(label="eval", dataloader=_data_spec(eval_loader)))
    return _data_spec(train_loader), evaluators


def compile_config_for(cfg: TrainConfig, device) -> dict | None:
    """Composer's compile_config when ``compile_model`` is on and compile can run here, else None."""
    if not cfg.compile_model:
        return None
    reason = compile_unavailable_reason(device)
    if reason:
        log.warning("compile_model: %s; running eagerly", reason)
        return None
    return {}


def prepare_run_dir(cfg: TrainConfig, save_folder: str | None, save_config: bool = True) -> None:
    """Rank 0: move aside checkpoints a killed run left half-written, and save the resolved config."""
    if dist.get_global_rank() != 0:
        return
    if cfg.autoresume and save_folder:
        for path in discard_incomplete_checkpoints(save_folder):
            log.warning("%s was left incomplete by a killed run; moved aside", path)
    os.makedirs(cfg.run_dir, exist_ok=True)
    if save_config:
        OmegaConf.save(OmegaConf.create(asdict(cfg)), os.path.join(cfg.run_dir, "config.yaml"))


def build_trainer(cfg: TrainConfig, phase: Phase | None = None, tokenizer=None) -> Trainer:
    """Validate ``cfg``, build every component from the registry and return a ready ``composer.Trainer``.

    For one phase of a multi-phase run (:mod:`bertforge.phases`) ``cfg`` is the phase's merged config, the
    schedule runs on the whole run's clock and a phase after the first starts from its predecessor's final
    checkpoint; ``tokenizer`` is the run's, built once.
    """
    configure_logging(cfg.python_log_level)
    device = pick_device(cfg)
    dist.initialize_dist(device, cfg.dist_timeout)
    validate(cfg)
    reproducibility.seed_all(cfg.seed)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer(cfg)
    train_collate = build_collator(cfg.train_loader, tokenizer, True, "train_loader")
    model = build_model(cfg, tokenizer, getattr(train_collate, "objective", "mlm"))
    device_batch = cfg.global_train_batch_size // dist.get_world_size()
    train_spec, evaluators = build_dataloaders(cfg, tokenizer, device_batch, train_collate)
    expand = lambda kwargs: expand_paths(kwargs, cfg)  # noqa: E731
    callbacks = [registry.callbacks.build(s, f"callbacks[{i}]", transform=expand) for i, s in enumerate(cfg.callbacks)]
    loggers = [registry.loggers.build(s, f"loggers[{i}]", transform=expand) for i, s in enumerate(cfg.loggers)]
    algorithms, hooks = loop_hooks(cfg.grad_clip_norm)
    micro = cfg.device_train_microbatch_size
    if micro == "auto" and isinstance(device, DeviceCPU):
        micro = device_batch
    save_folder = expand_paths(cfg.save_folder, cfg) if cfg.save_folder else None
    prepare_run_dir(cfg, save_folder, save_config=phase is None)
    scheduler = registry.schedulers.build(cfg.scheduler, "scheduler")
    load_path, load_ignore_keys, weights_only = cfg.load_path, None, cfg.load_weights_only
    if phase is not None:
        scheduler = phase_scheduler(phase, scheduler)
        callbacks.append(PhaseMarker(phase.name, phase.describe()))
        if phase.previous_folder is not None:  # a handover carries the optimizer, the RNG and the run's clock
            load_path, load_ignore_keys = previous_checkpoint(phase), handover_transform(phase.name)
            weights_only = False
    resume = resolve_resume(save_folder, cfg.autoresume, load_path, weights_only)
    if resume.resumed:  # the run's own checkpoint is loaded whole, as Composer's autoresume does
        load_ignore_keys = None
    parallelism = parallelism_config(cfg.parallelism, dist.get_world_size(), isinstance(device, DeviceGPU), micro)
    if parallelism:
        mark_fsdp_units(model)
        for callback in callbacks:  # hf_export gathers the shards into an unsharded copy of the model
            if isinstance(callback, HuggingFaceExport):
                callback.rebuild = functools.partial(build_model, cfg, tokenizer, model.objective)
    return Trainer(
        model=model, train_dataloader=train_spec, eval_dataloader=evaluators or None,
        eval_interval=cfg.eval_interval, eval_subset_num_batches=cfg.eval_subset_num_batches,
        max_duration=cfg.max_duration,
        optimizers=registry.optimizers.build(cfg.optimizer, "optimizer", model.named_parameters()),
        schedulers=scheduler,
        algorithms=algorithms, callbacks=[*callbacks, ResumeRNG(), *hooks], loggers=loggers,
        run_name=cfg.run_name,
        progress_bar=cfg.progress_bar, log_to_console=cfg.log_to_console,
        console_log_interval=cfg.console_log_interval, save_folder=save_folder, save_interval=cfg.save_interval,
        save_num_checkpoints_to_keep=cfg.save_num_checkpoints_to_keep, save_overwrite=cfg.save_overwrite,
        autoresume=resume.autoresume, load_path=resume.load_path, load_weights_only=resume.load_weights_only,
        load_ignore_keys=load_ignore_keys, spin_dataloaders=phase is None,
        device=device, precision=pick_precision(cfg, device), device_train_microbatch_size=micro, seed=cfg.seed,
        deterministic_mode=cfg.deterministic, dist_timeout=cfg.dist_timeout,
        python_log_level=cfg.python_log_level, compile_config=compile_config_for(cfg, device),
        parallelism_config=parallelism,
    )


def train(cfg: TrainConfig) -> Trainer:
    """Build the trainer, optionally evaluate once first, and train to ``max_duration`` (every phase in turn
    when the config lists ``phases``)."""
    if cfg.phases:
        return train_phases(cfg)
    trainer = build_trainer(cfg)
    if cfg.eval_first and cfg.eval_loader is not None and int(trainer.state.timestamp.batch) == 0:
        trainer.eval()
    trainer.fit()
    return trainer


def train_phases(cfg: TrainConfig) -> Trainer:
    """Run the phases of ``cfg`` in order; with autoresume, phases finished by an earlier launch are skipped."""
    configure_logging(cfg.python_log_level)
    dist.initialize_dist(pick_device(cfg), cfg.dist_timeout)
    validate(cfg)
    save_folder = expand_paths(cfg.save_folder, cfg) if cfg.save_folder else None
    phases = plan_phases(cfg, save_folder)
    for phase in phases:  # every phase's blocks and data, before any work
        validate(phase.cfg)
    tokenizer = build_tokenizer(cfg)
    check_handovers(phases, lambda phase_cfg: build_model(phase_cfg, tokenizer))  # on the meta device, no weights
    for phase in phases:  # a phase may read other data
        check_data_tokenizer(phase.cfg, tokenizer)
    prepare_run_dir(cfg, None)
    for phase in phases:
        if cfg.autoresume and phase is not phases[-1] and is_done(phase):
            log.info("phase %d/%d '%s' finished in an earlier launch; skipped", phase.index + 1, len(phases),
                     phase.name)
            continue
        trainer = build_trainer(phase.cfg, phase, tokenizer)
        if cfg.eval_first and cfg.eval_loader is not None and int(trainer.state.timestamp.batch) == 0:
            trainer.eval()
        trainer.fit()
        mark_done(phase, int(trainer.state.timestamp.batch))
        if phase is not phases[-1]:
            trainer.close()
            del trainer
            gc.collect()  # frees the phase's streaming datasets (shared memory) before the next opens its own
    return trainer


def main(argv: list[str]) -> None:
    """``main.py <yaml> [key=value ...]``: load and validate the config, then train."""
    parser = argparse.ArgumentParser(prog="main.py", description="Pretrain a BERT-family encoder with Composer.")
    parser.add_argument("config", help="YAML file, e.g. yamls/quickstart/hf-bert-tiny.yaml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_duration=100ba")
    args = parser.parse_args(argv)
    train(load_config(args.config, args.overrides))
