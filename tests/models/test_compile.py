"""torch.compile (``compile_model: true``) on CPU: every family compiles its forward the way Composer's Trainer
does and gives the eager outputs, loss and gradients (fp32). Compiling takes minutes on 2 cores: marked slow."""

from __future__ import annotations

import pytest
import torch
from composer.devices import DeviceCPU

from bertforge.bench.runner import compile_as_composer
from bertforge.train import compile_unavailable_reason
from tests.models.test_activation_checkpointing import CASES, DROPOUT, build, loss_and_grads, mlm_batch
from tests.models.test_nsp_head import word_tokenizer

ATOL = 1e-5  # fp32: inductor fuses and reorders the same operations
REASON = compile_unavailable_reason(DeviceCPU())
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=str(REASON))]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return word_tokenizer(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()  # no compiled code or recompile count carried between cases
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("case", ["flexbert_unpadded", "flexbert_padded", "m2_bert", "hf_bert"])
def test_compiled_forward_gives_the_eager_outputs_and_gradients(case, tokenizer):
    no_dropout = {key: 0.0 for key in DROPOUT[CASES[case][0]]}  # inductor draws its own dropout masks
    model = build(case, tokenizer, num_hidden_layers=1, **no_dropout)
    batch = mlm_batch()
    model.eval()
    with torch.no_grad():
        want = model(batch)
    want_loss, want_grads = loss_and_grads(model)

    compile_as_composer(model)
    model.eval()
    with torch.no_grad():
        got = model(batch)
    got_loss, got_grads = loss_and_grads(model)

    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # it compiled, not fell back to eager
    torch.testing.assert_close(got.logits, want.logits, rtol=0, atol=ATOL)
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=ATOL)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=0, atol=ATOL, msg=name)
