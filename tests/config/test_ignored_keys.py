"""Keys that would be accepted and then have no effect are refused in one line (or, where ignoring them is
deliberate, said in one log line): the user must never believe they trained X while training Y."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from composer.core import Time, Timestamp

from bertforge.config import load_config
from bertforge.config.schema import DatasetConfig, LoaderConfig, TokenizerConfig
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError
from tests.conftest import QUICKSTART_YAML


def _loader(local: str = "unused", split: str | None = None, **kw) -> LoaderConfig:
    return LoaderConfig(DatasetConfig(local=local, split=split), **kw)


@pytest.mark.parametrize("collator", ["mdlm", "sft"])
def test_mlm_probability_refused_with_a_collator_that_draws_its_own_rate(tiny_wordpiece, collator):
    from bertforge.data.text import build_collator

    with pytest.raises(ConfigError, match=rf"^train_loader.mlm_probability: collator '{collator}' draws its own "):
        build_collator(_loader(collator={"name": collator}, mlm_probability=0.3), tiny_wordpiece, True, "train_loader")
    built = build_collator(_loader(collator={"name": collator}), tiny_wordpiece, True, "train_loader")
    assert built.objective == "mdlm"


def test_mlm_probability_defaults_to_015_and_is_used_by_mlm(tiny_wordpiece):
    from bertforge.data.text import build_collator

    assert build_collator(_loader(), tiny_wordpiece, True, "train_loader").mlm_probability == 0.15
    assert build_collator(_loader(mlm_probability=0.4), tiny_wordpiece, False, "eval_loader").mlm_probability == 0.4


def test_mdlm_options_refused_on_the_mlm_collator():
    from bertforge import registry

    for option in ("schedule", "weighting", "eps"):
        with pytest.raises(ConfigError, match=rf"^train_loader.collator.{option}: unknown key"):
            registry.collators.validate({"name": "mlm", option: "cosine"}, "train_loader.collator")


@pytest.mark.parametrize("given, key", [
    ({"packing_lookahead": 4}, "packing_lookahead"),
    ({"prefetch_factor": 4}, "prefetch_factor"),
    ({"persistent_workers": True}, "persistent_workers"),
])
def test_loader_keys_without_effect_are_refused(given, key):
    with pytest.raises(ConfigError, match=rf"^train_loader.{key}: only applies "):
        from_dict(LoaderConfig, {"dataset": {"local": "x"}, **given}, "train_loader")
    enabled = {"packing": True} if key == "packing_lookahead" else {"num_workers": 2}
    from_dict(LoaderConfig, {"dataset": {"local": "x"}, **given, **enabled}, "train_loader")  # acts there


def test_shuffle_seed_without_shuffle_is_refused():
    with pytest.raises(ConfigError, match=r"^eval_loader.dataset.shuffle_seed: only applies with shuffle: true"):
        load_config(QUICKSTART_YAML, ["eval_loader.dataset.shuffle_seed=3"])


def test_eval_drop_last_refused_train_drop_last_defaults_to_true(sample_mds, tiny_wordpiece):
    from bertforge.data.text import build_text_dataloader

    with pytest.raises(ConfigError, match=r"^eval_loader.drop_last: evaluation always scores every sample"):
        load_config(QUICKSTART_YAML, ["eval_loader.drop_last=true"])
    loader = _loader(str(sample_mds), "val")
    assert build_text_dataloader(loader, tiny_wordpiece, 64, 16, 17, True).drop_last is True
    assert build_text_dataloader(loader, tiny_wordpiece, 64, 16, 17, False).drop_last is False
    kept = _loader(str(sample_mds), "val", drop_last=False)
    assert build_text_dataloader(kept, tiny_wordpiece, 64, 16, 17, True).drop_last is False


def _notes(caplog, overrides: list[str]) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bertforge"):
        load_config(QUICKSTART_YAML, overrides)
    return [r.getMessage() for r in caplog.records if r.name.startswith("bertforge")]


def test_tokenizer_training_keys_with_a_named_tokenizer_are_said_once(caplog):
    notes = _notes(caplog, ["tokenizer.name=runs/x/tokenizer", "tokenizer.lowercase=false"])  # YAML: vocab_size 4096
    assert notes == ["tokenizer: vocab_size=4096, lowercase=False only shape a tokenizer trained here; "
                     "'runs/x/tokenizer' is loaded as it is, so they are not used"]
    assert _notes(caplog, []) == []  # a tokenizer trained here uses them
    assert TokenizerConfig().vocab_size == 8192  # default of a tokenizer trained here


def test_eval_first_without_an_eval_loader_is_said(caplog):
    assert _notes(caplog, ["eval_loader=null"]) == [  # the YAML sets eval_first: true
        "eval_first: there is no eval_loader, so nothing is evaluated before training"]


@pytest.mark.parametrize("override, match", [
    ("load_weights_only=true", r"^load_weights_only: there is no load_path"),
    ("console_log_interval=0.1dur", r"^console_log_interval: '0.1dur': Composer's console logger counts in batches"),
    ("save_interval=0ba", r"^save_interval: '0ba' saves no checkpoint"),
    ("eval_interval=0ba", r"^eval_interval: '0ba' never evaluates"),
    ("grad_clip_norm=0", r"^grad_clip_norm: 0.0 would scale every gradient to 0"),
    ("max_duration=1dur", r"^max_duration: '1dur' is a fraction of the run's length and cannot set it"),
    ("eval_subset_num_batches=0", r"^eval_subset_num_batches: 0 must be -1"),
    ("eval_subset_num_batches=-2", r"^eval_subset_num_batches: -2 must be -1"),
])
def test_run_keys_without_effect_are_refused(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(QUICKSTART_YAML, [override])


def test_a_phase_handover_loads_the_whole_checkpoint_even_with_load_weights_only(sample_mds, tmp_path, monkeypatch):
    """Before: load_weights_only also applied to every phase handover, so phase 2 lost the optimizer state and the
    run's clock. Now only the run's own start (load_path) is weights only."""
    from bertforge import train
    from bertforge.config import load_config
    from bertforge.phases import plan_phases, previous_checkpoint
    from tests.conftest import QUICKSTART_YAML, tiny_overrides

    class Stop(Exception):
        pass

    seen = []

    def resolve(save_folder, autoresume, load_path, weights_only):
        seen.append((load_path, weights_only))
        raise Stop

    monkeypatch.setattr(train, "resolve_resume", resolve)
    start = tmp_path / "elsewhere" / "checkpoints" / "start.pt"
    start.parent.mkdir(parents=True)
    start.write_bytes(b"x")
    cfg = load_config(QUICKSTART_YAML, [*tiny_overrides(sample_mds, tmp_path / "run"), f"load_path={start}",
                                        "load_weights_only=true", "max_duration=4ba"])
    cfg.phases = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]
    phases = plan_phases(cfg, str(tmp_path / "run" / "checkpoints"))
    tokenizer = train.build_tokenizer(cfg)
    for phase in phases:
        with pytest.raises(Stop):
            train.build_trainer(phase.cfg, phase, tokenizer)
    assert seen == [(str(start), True), (previous_checkpoint(phases[1]), False)]


def _clock(max_duration: str, tokens: int = 0) -> SimpleNamespace:
    """What a Composer scheduler reads of the State: the run's length and the current timestamp."""
    return SimpleNamespace(max_duration=Time.from_timestring(max_duration), timestamp=Timestamp(token=tokens),
                           dataloader_len=None)


def test_wsd_decay_overlapping_the_warmup_or_in_another_unit_is_refused():
    from bertforge import registry

    spec = {"name": "warmup_stable_decay", "t_warmup": "0.5dur", "t_decay": "0.6dur"}
    with pytest.raises(ConfigError, match=r"^scheduler.t_decay: t_warmup 0.5dur \+ t_decay 0.6dur exceed the whole"):
        registry.schedulers.build(spec, "scheduler")
    registry.schedulers.build({**spec, "t_decay": "0.5dur"}, "scheduler")
    mixed = registry.schedulers.build({**spec, "t_warmup": "60ba", "t_decay": "0.5dur"}, "scheduler")
    with pytest.raises(ConfigError, match=r"^scheduler.t_decay: t_warmup 60ba \+ t_decay 0.5dur exceed the whole run "
                                          r"\(100ba\)"):  # found on the first call, when the run's length is known
        mixed(_clock("100ba"))
    tokens = registry.schedulers.build({**spec, "t_warmup": "3000tok", "t_decay": "0.1dur"}, "scheduler")
    with pytest.raises(ConfigError, match=r"^scheduler.t_warmup: 3000tok counts tok but the run's length counts ba "
                                          r"\(100ba\)"):  # it would warm up over 3000 batches, not tokens
        tokens(_clock("100ba"))
    assert tokens(_clock("1000000tok")) == 0.0 and 0 < tokens(_clock("1000000tok", tokens=1500)) < 1
    with pytest.raises(ConfigError, match=r"^scheduler.alpha_f: unknown key"):  # a key the schedule does not take
        registry.schedulers.validate({"name": "constant", "alpha_f": 0.1}, "scheduler")


@pytest.mark.parametrize("meta, max_seq_len, match", [
    ({"format": "sft", "sft": {"max_seq_len": 128}}, 64, r"^max_seq_len: 64 is shorter than the SFT samples"),
    ({"format": "tokens", "concat_tokens": 126}, 64, r"^max_seq_len: 64 cannot hold the 126-token chunks"),
    ({"format": "tokens", "concat_tokens": 126}, 128, None),
    ({"format": "sft", "sft": {"max_seq_len": 128}}, 256, None),
    ({"format": "text", "concat_tokens": None}, 8, None),
])
def test_rows_made_to_a_length_are_not_cut_silently(tmp_path, meta, max_seq_len, match):
    from bertforge.data.mds_checks import META_FILE, check_rows_fit

    (tmp_path / META_FILE).write_text(json.dumps(meta))
    if match is None:
        check_rows_fit(str(tmp_path), max_seq_len)
        return
    with pytest.raises(ConfigError, match=match):  # before any shard is read (there are none here)
        check_rows_fit(str(tmp_path), max_seq_len)


def test_documented_refusals_stay():
    from bertforge.parallel import parallelism_config
    from bertforge.runtime import trainer_precision

    with pytest.raises(ConfigError, match=r"^precision: amp_bf16 needs a GPU"):
        trainer_precision("amp_bf16", on_gpu=False)
    with pytest.raises(ConfigError, match=r"^parallelism.fsdp: FSDP shards across processes but this run has 1"):
        parallelism_config({"fsdp": {}}, 1, on_gpu=True)
    with pytest.raises(ConfigError, match=r"^autoresume: needs save_folder"):
        load_config(QUICKSTART_YAML, ["save_folder=null"])


@pytest.mark.parametrize("fmt, collator, match", [
    ({"format": "pairs", "pairs": {"static_masking": False}}, "mlm", r"holds sentence pairs .*use collator nsp$"),
    ({"format": "sft", "sft": {"max_seq_len": 64}}, "mdlm", r"holds chat samples .*use collator sft \(answers"),
    ({"format": "sft", "sft": {"max_seq_len": 64}}, "mlm", r"holds chat samples .*use collator sft \(answers"),
    ({"format": "text"}, "sft", r"holds text rows; collator 'sft' does not fit .*use collator mlm or mdlm$"),
    ({"format": "text"}, "nsp", r"holds text rows; collator 'nsp' does not fit"),
    ({"format": "pairs", "pairs": {"static_masking": False}}, "nsp", None),
    ({"format": "sft", "sft": {"max_seq_len": 64}}, "sft", None),
    ({"format": "tokens"}, "mdlm", None),
    ({}, "nsp", None),  # no recorded format: nothing to compare
])
def test_a_collator_that_would_drop_what_the_rows_carry_is_refused(tmp_path, tiny_wordpiece, fmt, collator, match):
    from bertforge.data.mds_checks import META_FILE
    from bertforge.data.text import build_collator

    (tmp_path / META_FILE).write_text(json.dumps(fmt))
    loader = _loader(str(tmp_path), collator={"name": collator})
    if match is None:
        build_collator(loader, tiny_wordpiece, True, "train_loader")
        return
    with pytest.raises(ConfigError, match=r"^train_loader.collator: .* " + match):
        build_collator(loader, tiny_wordpiece, True, "train_loader")


@pytest.mark.parametrize("given, key", [({"mlm_probability": 0.2}, "mlm_probability"),
                                        ({"collator": {"name": "nsp", "whole_word_mask": True}},
                                         "collator.whole_word_mask")])
def test_masking_options_refused_for_pairs_masked_at_conversion(tmp_path, given, key):
    from transformers import BertTokenizerFast

    from bertforge.data.mds_checks import META_FILE
    from bertforge.data.text import build_collator

    vocab = tmp_path / "vocab.txt"  # WordPiece with '##' pieces, so that whole-word masking can be built
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "w", "##s"]) + "\n")
    tokenizer = BertTokenizerFast(str(vocab))  # positional: vocab_file in transformers 4, vocab in 5

    meta = {"format": "pairs", "pairs": {"static_masking": True}}
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=rf"^eval_loader.{key}: .* holds the masks made at conversion"):
        build_collator(_loader(str(tmp_path), **{"collator": {"name": "nsp"}, **given}), tokenizer, False,
                       "eval_loader")
    build_collator(_loader(str(tmp_path), collator={"name": "nsp"}), tokenizer, False, "eval_loader")
    (tmp_path / META_FILE).write_text(json.dumps({**meta, "pairs": {"static_masking": False}}))  # dynamic: it acts
    build_collator(_loader(str(tmp_path), **{"collator": {"name": "nsp"}, **given}), tokenizer, False,
                   "eval_loader")


def test_eval_collator_of_another_objective_is_refused(tiny_wordpiece):
    from bertforge.data.text import build_collator, check_eval_objective

    mdlm = _loader(collator={"name": "mdlm"})
    collate = build_collator(mdlm, tiny_wordpiece, False, "eval_loader")
    with pytest.raises(ConfigError, match=r"^eval_loader.collator: 'mdlm' makes mdlm batches but the model scores "
                                          r"the train_loader collator's objective, mlm"):
        check_eval_objective("mlm", collate, mdlm)
    check_eval_objective("mdlm", collate, mdlm)
    sft = _loader(collator={"name": "sft"})
    check_eval_objective("mdlm", build_collator(sft, tiny_wordpiece, False, "eval_loader"), sft)
