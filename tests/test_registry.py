"""The registry lists every YAML name, and each builder makes a working component."""

from __future__ import annotations

import pytest
import torch

from bertforge import registry
from bertforge.errors import UserError


def test_registry_names():
    assert registry.models.names() == ["flexbert", "hf_bert", "m2_bert"]
    assert registry.classifiers.names() == ["flexbert", "hf_bert", "m2_bert"]
    assert registry.optimizers.names() == ["adamw", "decoupled_adamw", "stable_adamw"]
    assert registry.schedulers.names() == [
        "constant", "constant_with_warmup", "cosine_decay_with_warmup", "linear_decay_with_warmup",
        "warmup_stable_decay",
    ]
    assert registry.callbacks.names() == [
        "batch_size_warmup", "generate_samples", "hf_export", "lr_monitor", "memory_monitor", "optimizer_monitor",
        "real_token_fraction", "runtime_estimator", "speed_monitor", "throughput_mfu",
    ]
    assert registry.loggers.names() == ["mlflow", "tensorboard", "wandb"]
    assert registry.collators.names() == ["mdlm", "mlm", "nsp", "sft"]


@pytest.mark.parametrize("kind", ["callbacks", "schedulers"])
def test_every_component_builds_with_defaults(kind):
    reg = getattr(registry, kind)
    for name in reg.names():
        assert reg.build({"name": name}, kind) is not None


def test_optimizer_param_groups_keep_norms_and_biases_out_of_decay():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    named = [(f"layer.{n}" if n.startswith("0") else f"norm.{n}", p) for n, p in model.named_parameters()]
    opt = registry.optimizers.build({"name": "decoupled_adamw", "weight_decay": 0.1, "no_decay_norms_biases": True},
                                    "optimizer", named)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and len(decay["params"]) == 1  # the Linear weight
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


def test_tensorboard_logger_builds(tmp_path):
    logger = registry.loggers.build({"name": "tensorboard", "log_dir": str(tmp_path)}, "loggers[0]")
    assert type(logger).__name__ == "TensorboardLogger"


def test_missing_optional_logger_is_one_line():
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here, so the missing-package message cannot be shown")
    with pytest.raises(UserError, match=r"loggers: 'wandb' needs the 'wandb' package; pip install wandb"):
        registry.loggers.build({"name": "wandb"}, "loggers[0]")


def test_per_parameter_optimizer_options_form_their_own_group():
    special = torch.nn.Parameter(torch.zeros(3))
    special._optim = {"lr": 1e-5, "weight_decay": 0.0}
    plain = torch.nn.Parameter(torch.zeros(3))
    opt = registry.optimizers.build({"name": "decoupled_adamw", "lr": 1e-3, "weight_decay": 0.1}, "optimizer",
                                    [("plain.weight", plain), ("filter.z", special)])
    assert len(opt.param_groups) == 2
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-5]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[1]["params"][0] is special
