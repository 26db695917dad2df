"""Every registered optimizer, under a Composer schedule built as train.py builds it, steps each
parameter group (M2-style per-parameter ``_optim`` options) at its own base lr times the schedule.

The model's loss is the sum of its parameters, so every gradient is 1 on every step; for Adam-like
optimizers the bias-corrected update is then exactly ``lr / (1 + eps)`` (StableAdamW's clipping ratio
is 1), and the whole parameter change is ``p * decay + lr / (1 + eps)``: the test checks both the
``lr`` each group holds and the step it applied, in float64, to 1e-9 relative.
"""

from __future__ import annotations

import pytest
import torch

from bertforge import registry

BASE_LR, BASE_WD, EPS, BATCHES, WARMUP, ALPHA_F = 4e-4, 1e-2, 1e-6, 6, 2, 0.2
# name -> (lr, weight decay) of each group, as param_groups orders them: untagged first, then by tag
GROUPS = {"w": (BASE_LR, BASE_WD), "filt": (1e-3, 0.1), "pos": (1e-5, 0.0)}
# How each optimizer scales a group's weight decay on a step at lr = base * f: "coupled" decays by
# lr * wd (torch AdamW), "decoupled" by f * wd (Composer's DecoupledAdamW, lr / initial_lr).
WEIGHT_DECAY_SCALES = {"adamw": "coupled", "decoupled_adamw": "decoupled", "stable_adamw": "decoupled"}


def schedule(batch: int) -> float:
    """linear_decay_with_warmup by hand: 0 -> 1 over WARMUP batches, then linearly to ALPHA_F at BATCHES."""
    if batch < WARMUP:
        return batch / WARMUP
    return 1.0 + (ALPHA_F - 1.0) * (batch - WARMUP) / (BATCHES - WARMUP)


def _train(optimizer_name: str) -> tuple[list[list[float]], list[dict[str, torch.Tensor]]]:
    """Train the tagged toy model for BATCHES batches through Composer; per batch, each group's lr and
    the parameters before it (plus the final parameters)."""
    from composer import Trainer
    from composer.core import Callback
    from composer.models import ComposerModel

    from bertforge.train import loop_hooks

    class Tagged(ComposerModel):
        def __init__(self):
            super().__init__()
            for name, (lr, wd) in GROUPS.items():
                param = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
                if name != "w":
                    param._optim = {"lr": lr, "weight_decay": wd}
                self.register_parameter(name, param)

        def forward(self, batch):
            return batch

        def loss(self, outputs, batch):
            return sum(p.sum() for p in self.parameters())  # every gradient is 1

    class Record(Callback):
        def __init__(self):
            self.lrs, self.params = [], []

        def _snapshot(self, state):
            self.params.append({n: p.detach().clone() for n, p in state.model.named_parameters()})

        def before_forward(self, state, logger):
            self.lrs.append([group["lr"] for group in state.optimizers[0].param_groups])
            self._snapshot(state)

        def fit_end(self, state, logger):
            self._snapshot(state)

    model, record = Tagged(), Record()
    spec = {"name": optimizer_name, "lr": BASE_LR, "weight_decay": BASE_WD, "eps": EPS}
    optimizer = registry.optimizers.build(spec, "optimizer", model.named_parameters())
    scheduler = registry.schedulers.build(
        {"name": "linear_decay_with_warmup", "t_warmup": f"{WARMUP}ba", "alpha_f": ALPHA_F}, "scheduler")
    algorithms, hooks = loop_hooks(None)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(BATCHES, 1)), batch_size=1)
    Trainer(model=model, train_dataloader=loader, max_duration=f"{BATCHES}ba", optimizers=optimizer,
            schedulers=scheduler, algorithms=algorithms, callbacks=[record, *hooks], device="cpu",
            precision="fp32", progress_bar=False, log_to_console=False, loggers=[]).fit()
    group_names = [next(n for n, p in model.named_parameters() if p is g["params"][0]) for g in optimizer.param_groups]
    assert group_names == list(GROUPS), group_names
    return record.lrs, record.params


@pytest.mark.parametrize("name", registry.optimizers.names())
def test_each_group_steps_at_its_own_scheduled_rate(name):
    if name not in WEIGHT_DECAY_SCALES:
        pytest.fail(f"optimizer '{name}': say how it scales weight decay in WEIGHT_DECAY_SCALES")
    lrs, params = _train(name)
    assert len(lrs) == BATCHES and len(params) == BATCHES + 1
    for batch in range(BATCHES):
        f = schedule(batch)
        assert lrs[batch] == pytest.approx([lr * f for lr, _ in GROUPS.values()], rel=1e-12), batch
        for group, (lr, wd) in GROUPS.items():
            before, after = params[batch][group], params[batch + 1][group]
            decay = lr * f * wd if WEIGHT_DECAY_SCALES[name] == "coupled" else f * wd
            expected = -before * decay - lr * f / (1 + EPS)
            torch.testing.assert_close(after - before, expected, rtol=1e-9, atol=1e-15,
                                       msg=lambda m, g=group, b=batch: f"{name} group {g} batch {b}: {m}")
