"""lm-evaluation-harness model ``bertforge_mdlm``: a masked-diffusion BERT (any Hugging Face MaskedLM folder).

lm-eval (``pip install lm-eval==0.4.13``) is optional: this module imports without it and says how to install it
when used. Run an evaluation through this module's entry point, which registers the model and hands the command
line to lm-eval's own CLI unchanged:

    python -m bertforge.generation.lm_eval_adapter --model bertforge_mdlm \\
        --model_args pretrained=runs/<run>/hf,mc_num=32 --tasks lambada_openai --batch_size 8

or from Python: ``import bertforge.generation.lm_eval_adapter`` then ``lm_eval.simple_evaluate(model=
"bertforge_mdlm", model_args=...)``. (lm-eval's ``--include_path`` only adds task YAMLs, it imports no model.)

- ``loglikelihood``: the Monte-Carlo ELBO of the continuation (:mod:`bertforge.generation.likelihood`), ``mc_num``
  samples, ``mc_batch_size`` per forward batch; ``is_greedy`` is whether one-token-per-step greedy sampling of
  the continuation's length gives exactly the continuation (costs one forward pass per continuation token; pass
  ``check_greedy=false`` to skip it and report False).
- ``loglikelihood_rolling``: the sum of the ELBOs of disjoint windows of the text, each after [CLS]: a lower bound
  on log p(text), so the perplexities lm-eval derives from it are upper bounds.
- ``generate_until``: the iterative-unmasking sampler with the model arguments ``max_new_tokens``, ``steps``,
  ``block_length``, ``threshold``, ``remasking``, ``temperature``, ``cache`` (none|prefix|dual) (the canvas
  length is a sampler setting: a task's ``max_gen_toks`` is not used), stopped at the tokenizer's end token and
  cut at the task's ``until`` strings; ``--batch_size`` prompts per batch.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import torch

from bertforge.errors import UserError
from bertforge.generation.likelihood import ELBOConfig, elbo_loglikelihood
from bertforge.generation.loading import load_masked_lm, logits_fn, model_max_length
from bertforge.generation.sampler import SamplerConfig, sample
from bertforge.generation.text import end_token_ids
from bertforge.models.block_cache import build_cache

MODEL_NAME = "bertforge_mdlm"
INSTALL = "pip install lm-eval==0.4.13"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

try:
    from lm_eval.api.model import LM as _Base
    from lm_eval.api.registry import model_registry
except ImportError:  # optional dependency: the class below says how to install it when it is used
    _Base, model_registry = object, None


def require_lm_eval() -> None:
    """A one-line error when lm-eval is not installed."""
    if model_registry is None:
        raise UserError(f"the lm-eval adapter needs lm-evaluation-harness, which is not installed: {INSTALL}")


class MDLMEvalLM(_Base):
    """The lm-eval model for a masked-diffusion BERT; keyword arguments are lm-eval's ``--model_args``."""

    def __init__(self, pretrained: str, mc_num: int = 128, mc_batch_size: int = 32, seed: int = 0,
                 check_greedy: bool = True, max_new_tokens: int = 128, steps: int | None = None,
                 block_length: int | None = None, threshold: float | None = None,
                 remasking: str = "low_confidence", temperature: float = 0.0, max_length: int | None = None,
                 batch_size: int | str = 1, max_batch_size: int | None = None, device: str | None = None,
                 dtype: str = "float32", cache: str = "none"):
        require_lm_eval()
        super().__init__()
        if dtype not in DTYPES:
            raise UserError(f"model_args dtype={dtype}: choose one of {', '.join(DTYPES)}")
        if not str(batch_size).isdigit() or int(batch_size) < 1:
            raise UserError(f"--batch_size {batch_size}: give a positive integer (prompts per generation batch)")
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model, self.tokenizer = load_masked_lm(str(pretrained), self._device, DTYPES[dtype])
        self.model_fn = logits_fn(model, len(self.tokenizer))
        self.max_length = max_length or model_max_length(model.config) or 512
        self.elbo = ELBOConfig(mc_num=mc_num, batch_size=mc_batch_size, seed=seed)
        self.sampler = SamplerConfig(max_new_tokens=max_new_tokens, steps=steps, block_length=block_length,
                                     temperature=temperature, remasking=remasking, threshold=threshold, seed=seed,
                                     cache=cache)
        self.cache = build_cache(cache, model, len(self.tokenizer))
        self.check_greedy, self.batch_size = check_greedy, int(batch_size)
        tok = self.tokenizer
        self.mask_id = tok.mask_token_id
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        self.prefix = [] if start is None else [start]
        self.ends = end_token_ids(tok)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self.ends or [self.mask_id])[0]

    # ----------------------------------------------------------------------------------- tokens
    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids after [CLS], continuation ids) split from one tokenization of the whole text, with the
        context's trailing spaces moved to the continuation (lm-eval's convention); the context is cut from
        the left to fit the model."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, ctx = self._encode(context + continuation), self._encode(context)
        if whole[:len(ctx)] != ctx or len(whole) == len(ctx):  # the tokenizer merged across the split
            whole = ctx + self._encode(continuation)
        cont = whole[len(ctx):]
        room = self.max_length - len(self.prefix) - len(cont)
        if room < 0:
            raise UserError(f"a continuation of {len(cont)} tokens does not fit the model's max length "
                            f"{self.max_length}; raise model_args max_length if the model takes longer inputs")
        return self.prefix + ctx[max(len(ctx) - room, 0):], cont

    # ----------------------------------------------------------------------------------- scoring
    def _score(self, context: list[int], continuation: list[int]) -> float:
        return elbo_loglikelihood(self.model_fn, context, continuation, mask_token_id=self.mask_id,
                                  config=self.elbo, device=self._device).value

    def _is_greedy(self, context: list[int], continuation: list[int]) -> bool:
        n = len(continuation)
        out = sample(self.model_fn, [context], SamplerConfig(max_new_tokens=n, steps=n), mask_token_id=self.mask_id,
                     pad_token_id=self.pad_id, device=self._device)
        return out.tokens[0].tolist() == list(continuation)

    def loglikelihood(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """(ELBO estimate of log p(continuation | context), is_greedy) per ``(context, continuation)`` request."""
        results = []
        for request in requests:
            ctx, cont = self.encode_pair(*request.args)
            greedy = self.check_greedy and self._is_greedy(ctx, cont)
            results.append((self._score(ctx, cont), bool(greedy)))
        return results

    def loglikelihood_rolling(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[float]:
        """The ELBO of each whole text: the sum over disjoint windows (lm-eval's rolling windows)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        prefix = self.prefix[0] if self.prefix else self.pad_id
        results = []
        for request in requests:
            windows = get_rolling_token_windows(self._encode(request.args[0]), prefix, self.max_length - 1, 1)
            results.append(sum(self._score(*make_disjoint_window(w)) for w in windows))
        return results

    # ----------------------------------------------------------------------------------- generation
    def generate_until(self, requests: Sequence[Any], disable_tqdm: bool = False) -> list[str]:
        """The sampler's answer per ``(context, gen_kwargs)`` request, cut at the first ``until`` string."""
        results: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):  # one batch shape per distinct gen_kwargs
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        room = self.max_length - self.sampler.max_new_tokens
        if room < 1:
            raise UserError(f"model_args max_new_tokens={self.sampler.max_new_tokens} leaves no room for a prompt in "
                            f"the model's max length {self.max_length}; lower max_new_tokens")
        for indices in groups.values():
            until = requests[indices[0]].args[1].get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            for lo in range(0, len(indices), self.batch_size):
                batch = indices[lo:lo + self.batch_size]
                prompts = [(self.prefix + self._encode(requests[i].args[0]))[-room:] for i in batch]
                out = sample(self.model_fn, prompts, self.sampler, mask_token_id=self.mask_id,
                             pad_token_id=self.pad_id, end_token_ids=self.ends, device=self._device,
                             cache=self.cache)
                for i, answer in zip(batch, out.answers):
                    results[i] = cut_at(self.tokenizer.decode(answer, skip_special_tokens=True), until)
        return results

    # ----------------------------------------------------------------------------------- chat and bookkeeping
    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The conversation rendered as the model's SFT data was (for lm-eval's --apply_chat_template): the
        tokenizer's chat template, else the plain alpaca one (SFT data rendered with it leaves none); without
        the generation prompt a final assistant message is left open for the model to continue."""
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                      add_generation_prompt=add_generation_prompt)
        from bertforge.data.sft import SFTEncoder, SFTOptions

        encoder = SFTEncoder(self.tokenizer, SFTOptions(max_seq_len=1 << 30, chat_template="plain"))
        if not add_generation_prompt and chat_history and chat_history[-1]["role"] == "assistant":
            return encoder.prompt_text(chat_history[:-1]) + chat_history[-1]["content"]
        return encoder.prompt_text(chat_history)

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")


def cut_at(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any of the ``until`` strings."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    return text


def register() -> None:
    """Register ``bertforge_mdlm`` with lm-eval's model registry (lazily: the class loads on first use)."""
    require_lm_eval()
    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target="bertforge.generation.lm_eval_adapter:MDLMEvalLM")


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line with ``bertforge_mdlm`` registered (``argv`` defaults to ``sys.argv[1:]``)."""
    register()
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if model_registry is not None:
    register()

if __name__ == "__main__":
    main()
