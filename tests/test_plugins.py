"""Components from outside bertforge: a YAML's ``code_paths`` files and installed packages' entry points."""

from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bertforge import registry
from bertforge.config.load import load_raw
from bertforge.config.validate import from_dict
from bertforge.errors import ConfigError, UserError
from tests.conftest import QUICKSTART_YAML, tiny_overrides

TOY_MODULE = '''
"""A user's own model, callback and collator, registered from outside bertforge."""
import torch
from composer.core import Callback
from composer.models import ComposerModel

from bertforge.registry import callbacks, collators, models


class ToyMLM(ComposerModel):
    """Embedding -> linear: predicts each masked token from itself alone."""

    def __init__(self, vocab_size: int, hidden_size: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, hidden_size)
        self.out = torch.nn.Linear(hidden_size, vocab_size)

    def forward(self, batch):
        return self.out(self.embed(batch["input_ids"]))  # (B, T, V)

    def loss(self, outputs, batch):
        return torch.nn.functional.cross_entropy(outputs.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)


class BatchCounter(Callback):
    def __init__(self):
        self.batches = 0

    def batch_end(self, state, logger):
        self.batches += 1


@models.register("toy_mlm")
def build_toy(tokenizer, hidden_size: int = 8):
    return ToyMLM(len(tokenizer), hidden_size)


@callbacks.register("toy_batch_counter")
def build_counter():
    return BatchCounter()


class FixedPositionMask:
    """Pads the samples and masks the token at one fixed position of every row; counts its calls."""

    def __init__(self, tokenizer, position):
        self.pad_id, self.mask_id, self.position = tokenizer.pad_token_id, tokenizer.mask_token_id, position
        self.calls, self.labels = 0, []

    def __call__(self, samples):
        self.calls += 1
        width = max(len(s["input_ids"]) for s in samples)
        ids = torch.full((len(samples), width), self.pad_id)
        attention_mask = torch.zeros_like(ids)
        for row, sample in enumerate(samples):
            ids[row, : len(sample["input_ids"])] = torch.tensor(sample["input_ids"])
            attention_mask[row, : len(sample["input_ids"])] = 1
        labels = torch.full_like(ids, -100)
        labels[:, self.position] = ids[:, self.position]
        ids[:, self.position] = self.mask_id
        self.labels.append(labels)
        return {"input_ids": ids, "attention_mask": attention_mask, "labels": labels}


@collators.register("toy_fixed_mask")
def build_fixed_mask(tokenizer, mlm_probability, deterministic, position: int = 1):
    collator = FixedPositionMask(tokenizer, position)
    collator.context = (mlm_probability, deterministic)
    return collator
'''


def _toy_config(sample_mds: Path, tmp_path: Path, code_paths: list[str]):
    from bertforge.config import TrainConfig

    raw = load_raw(QUICKSTART_YAML, tiny_overrides(sample_mds, tmp_path / "run", max_duration="2ba",
                                                   global_train_batch_size=4, **{"tokenizer.max_train_docs": 200}))
    raw.update(code_paths=code_paths, model={"name": "toy_mlm", "hidden_size": 8}, eval_loader=None,
               callbacks=[{"name": "toy_batch_counter"}], save_folder=None, autoresume=False)
    return from_dict(TrainConfig, raw)


def test_toy_model_from_code_paths_trains_two_batches(sample_mds, tmp_path, clean_registries):
    from bertforge.train import build_trainer

    toy = tmp_path / "my_components.py"
    toy.write_text(TOY_MODULE)
    trainer = build_trainer(_toy_config(sample_mds, tmp_path, [str(toy)]))
    model = trainer.state.model
    assert type(model).__name__ == "ToyMLM"
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer.fit()
    counter = next(c for c in trainer.state.callbacks if type(c).__name__ == "BatchCounter")
    assert counter.batches == 2
    assert torch.isfinite(trainer.state.loss).all()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert sorted(changed) == ["embed.weight", "out.bias", "out.weight"]


def test_collator_from_code_paths_makes_every_training_batch(sample_mds, tmp_path, clean_registries):
    from bertforge.train import build_trainer

    toy = tmp_path / "my_components.py"
    toy.write_text(TOY_MODULE)
    cfg = _toy_config(sample_mds, tmp_path, [str(toy)])
    cfg.train_loader.collator = {"name": "toy_fixed_mask", "position": 2}
    trainer = build_trainer(cfg)
    trainer.fit()
    collator = trainer.state.train_dataloader.collate_fn
    assert type(collator).__name__ == "FixedPositionMask"
    assert collator.context == (cfg.train_loader.mlm_probability, False)  # the loader's rate; random train masks
    assert collator.calls == 2
    for labels in collator.labels:  # only the chosen position is ever predicted
        assert (labels != -100).nonzero()[:, 1].unique().tolist() == [2]
    assert torch.isfinite(trainer.state.loss).all()


def test_collator_errors_come_before_any_work(sample_mds, tmp_path, clean_registries, monkeypatch):
    from bertforge import train
    from bertforge.config.schema import DatasetConfig, LoaderConfig
    from bertforge.data.text import build_collator

    def no_work(cfg):
        raise AssertionError("the tokenizer was built before the config was checked")

    monkeypatch.setattr(train, "build_tokenizer", no_work)
    toy = tmp_path / "my_components.py"
    toy.write_text(TOY_MODULE)
    cfg = _toy_config(sample_mds, tmp_path, [str(toy)])
    cfg.train_loader.collator = {"name": "toy_fixed_msk"}
    with pytest.raises(ConfigError, match=r"^train_loader\.collator\.name: unknown collator 'toy_fixed_msk' "
                       r"\(did you mean 'toy_fixed_mask'\?\); choose one of mdlm, mlm, nsp, sft, toy_fixed_mask$"):
        train.build_trainer(cfg)
    cfg.train_loader.collator = {"name": "toy_fixed_mask", "positon": 1}
    with pytest.raises(ConfigError, match=r"^train_loader\.collator\.positon: unknown key \(did you mean 'position'"):
        train.build_trainer(cfg)
    packed = LoaderConfig(DatasetConfig(local=str(sample_mds)), collator={"name": "toy_fixed_mask"}, packing=True)
    tokenizer = SimpleNamespace(pad_token_id=0, mask_token_id=4)
    with pytest.raises(ConfigError, match=r"^train_loader\.packing: collator 'toy_fixed_mask' cannot batch packed "
                       r"documents"):
        build_collator(packed, tokenizer, True, "train_loader")


def test_code_paths_errors_name_the_entry(tmp_path, clean_registries):
    with pytest.raises(ConfigError, match=r"^code_paths\[0\]: file not found: .*nope.py"):
        registry.import_code_paths([str(tmp_path / "nope.py")])
    fine, broken = tmp_path / "fine.py", tmp_path / "broken.py"
    fine.write_text("VALUE = 1\n")
    broken.write_text("import torch\n1 / 0\n")
    with pytest.raises(ConfigError, match=r"^code_paths\[1\]: importing .*broken.py failed: ZeroDivisionError"):
        registry.import_code_paths([str(fine), str(broken)])
    clash = tmp_path / "clash.py"
    clash.write_text("from bertforge.registry import models\n\n@models.register('flexbert')\ndef mine(tokenizer):\n"
                     "    return None\n")
    with pytest.raises(ConfigError, match=r"^code_paths\[0\]: importing .* failed: ValueError: model 'flexbert' is "
                       r"already registered by bertforge.models.flexbert.build"):
        registry.import_code_paths([str(clash)])


def _fake_entry_points(monkeypatch, *entries: tuple[str, str, str]) -> None:
    """Installed packages as importlib.metadata sees them: (group, name, 'module:attr') entry points."""
    found = importlib.metadata.EntryPoints(
        importlib.metadata.EntryPoint(name=name, value=value, group=group) for group, name, value in entries
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: found.select(**kw) if kw else found)
    monkeypatch.setattr(registry, "_loaded", False)


def test_entry_points_register_objects_and_modules(tmp_path, monkeypatch, clean_registries):
    package = tmp_path / "bf_plugin_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent('''
        from composer.optim import ConstantScheduler


        def build_flat(alpha: float = 0.5):
            """A constant schedule at alpha."""
            return ConstantScheduler(alpha=alpha)
    '''))
    (package / "models.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    _fake_entry_points(monkeypatch, ("bertforge.schedulers", "flat", "bf_plugin_pkg:build_flat"),
                       ("bertforge.models", "toy", "bf_plugin_pkg.models"))
    assert "flat" in registry.schedulers.names()
    assert registry.schedulers.build({"name": "flat", "alpha": 0.25}, "scheduler").alpha == 0.25
    assert {"toy_mlm"} <= set(registry.models.names())  # the module registered itself on import
    assert "toy_batch_counter" in registry.callbacks.names()


def test_broken_entry_point_is_one_line(monkeypatch, clean_registries):
    _fake_entry_points(monkeypatch, ("bertforge.callbacks", "bad", "no_such_module_xyz:build"))
    with pytest.raises(UserError) as err:
        registry.callbacks.names()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("entry point 'bad = no_such_module_xyz:build' in group 'bertforge.callbacks'")
    assert "ModuleNotFoundError" in message
    with pytest.raises(UserError):  # still reported on the next lookup, not silently skipped
        registry.models.get("flexbert")
