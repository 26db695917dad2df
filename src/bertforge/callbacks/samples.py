"""``generate_samples``: decode a few prompts with the model being trained, every N batches and at the end.

For masked-diffusion runs (and any MLM): the samples show what the model generates as training goes on. They
are logged as Composer traces (``samples/<i>``) and through python logging. Every rank decodes (a sharded model
needs all of them in its forward); Composer's loggers write rank 0's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from composer.core import Callback, State, get_precision_context
from composer.loggers import Logger

from bertforge.generation.loading import logits_fn, model_max_length
from bertforge.generation.sampler import SamplerConfig
from bertforge.generation.text import TextGenerator
from bertforge.models.params import inner_module, peel
from bertforge.registry import callbacks

log = logging.getLogger(__name__)


class GenerateSamples(Callback):
    """Every ``interval`` batches (0: only at fit end) and at fit end, sample answers to ``prompts`` and log them."""

    def __init__(self, prompts: Sequence[str], interval: int, config: SamplerConfig,
                 end_tokens: Sequence[str] | None = None, chat: bool = False):
        self.prompts = list(prompts)
        self.interval = interval
        self.config = config
        self.end_tokens = end_tokens
        self.chat = chat

    def batch_end(self, state: State, logger: Logger) -> None:
        if self.interval and int(state.timestamp.batch) % self.interval == 0:
            self.log_samples(state, logger)

    def fit_end(self, state: State, logger: Logger) -> None:
        self.log_samples(state, logger)

    def log_samples(self, state: State, logger: Logger) -> list[str]:
        """Sample with the current weights (eval mode, no gradients, the run's precision); return the texts."""
        tokenizer = getattr(peel(state.model), "tokenizer", None)
        if tokenizer is None or tokenizer.mask_token_id is None:
            log.warning("generate_samples: the model has no tokenizer with a mask token; no samples")
            return []
        module = inner_module(state.model)
        device = next(module.parameters()).device
        generator = TextGenerator(logits_fn(module, len(tokenizer)), tokenizer,
                                  model_max_length(getattr(module, "config", None)), device)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), get_precision_context(state.precision):
                texts = generator.generate(self.prompts, self.config, self.chat, self.end_tokens)
        finally:
            module.train(was_training)
        batch = int(state.timestamp.batch)
        logger.log_traces({f"samples/{i}": f"{p} {t}" for i, (p, t) in enumerate(zip(self.prompts, texts))})
        for prompt, text in zip(self.prompts, texts):
            log.info("sample at batch %d: %s %s", batch, prompt, text)
        return texts


@callbacks.register("generate_samples")
def build_generate_samples(prompts: list[str] | None = None, interval: int = 500, max_new_tokens: int = 32,
                           steps: int | None = None, block_length: int | None = None, temperature: float = 0.0,
                           remasking: str = "low_confidence", threshold: float | None = None,
                           end_tokens: list[str] | None = None, chat: bool = False) -> Callback:
    """Log sampled continuations of ``prompts`` every ``interval`` batches and at fit end (masked diffusion)."""
    config = SamplerConfig(max_new_tokens=max_new_tokens, steps=steps, block_length=block_length,
                           temperature=temperature, remasking=remasking, threshold=threshold)
    return GenerateSamples(prompts or ["ROMEO:"], interval, config, end_tokens, chat)
