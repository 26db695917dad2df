"""Text in, text out: prompts tokenized for the sampler, the end-of-answer tokens resolved, answers decoded."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from bertforge.errors import UserError
from bertforge.generation.loading import check_mask_token, load_masked_lm, logits_fn, model_max_length
from bertforge.generation.sampler import BlockCache, GenerationOutput, ModelFn, SamplerConfig, sample

log = logging.getLogger(__name__)


def encode_prompt(tokenizer: Any, prompt: str, chat: bool = False) -> list[int]:
    """Token ids of ``prompt``: with ``chat``, a one-turn conversation rendered as SFT training rendered it (the
    tokenizer's chat template, else the plain alpaca template, which SFT data rendered without one records by
    leaving the run tokenizer without a template) and ending with the answer's header; else [CLS] (or BOS) + the
    text, with no [SEP]: the answer continues the text."""
    if chat:
        from bertforge.data.sft import SFTEncoder, SFTOptions

        return SFTEncoder(tokenizer, SFTOptions(max_seq_len=1 << 30)).prompt_ids([{"role": "user", "content": prompt}])
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    body = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return ([start] if start is not None else []) + list(body)


def end_token_ids(tokenizer: Any, end_tokens: Sequence[str] | None = None) -> list[int]:
    """Ids of the end-of-answer tokens: ``end_tokens`` (each must be one token), else the tokenizer's eos token,
    else its sep token; ``end_tokens=[]`` turns the stop off."""
    if end_tokens is None:
        found = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        return [] if found is None else [found]
    ids = []
    for token in end_tokens:
        tid = tokenizer.convert_tokens_to_ids(token)
        if tid is None or tid == tokenizer.unk_token_id:
            raise UserError(f"end token '{token}' is not a single token of this tokenizer; give one of its tokens, "
                            f"e.g. {tokenizer.sep_token or tokenizer.eos_token}")
        ids.append(tid)
    return ids


@dataclass
class TextGenerator:
    """A model callable and its tokenizer: ``generate(prompts, config)`` returns the answers as text."""

    model_fn: ModelFn
    tokenizer: Any
    max_length: int | None = None
    device: torch.device | str | None = None
    model: torch.nn.Module | None = None
    """The module behind ``model_fn``, for a block cache (``SamplerConfig.cache``); None: full passes only."""
    _caches: dict = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_pretrained(cls, folder: str, device: str = "cpu", dtype: torch.dtype | None = None) -> TextGenerator:
        """Load a Hugging Face masked-LM folder (see :func:`load_masked_lm`)."""
        model, tokenizer = load_masked_lm(folder, device, dtype)
        return cls(logits_fn(model, len(tokenizer)), tokenizer, model_max_length(model.config), device, model)

    def cache(self, config: SamplerConfig) -> BlockCache | None:
        """The block cache ``config.cache`` asks for (built once per kind); None for 'none', and for a model
        without one (said in one log line)."""
        if config.cache == "none":
            return None
        if config.cache not in self._caches:
            from bertforge.models.block_cache import build_cache

            if self.model is None:
                log.warning("cache: this generator has no module behind its model function; decoding with full "
                            "forward passes")
                self._caches[config.cache] = None
            else:
                self._caches[config.cache] = build_cache(config.cache, self.model, len(self.tokenizer))
        return self._caches[config.cache]

    def run(self, prompts: Sequence[str], config: SamplerConfig, chat: bool = False,
            end_tokens: Sequence[str] | None = None) -> GenerationOutput:
        """Sample answers for ``prompts`` (one batch); the token-level output."""
        tok = self.tokenizer
        mask_id = check_mask_token(tok, "tokenizer")
        ends = end_token_ids(tok, end_tokens)
        if chat and end_tokens is None and tok.sep_token_id is not None and tok.sep_token_id not in ends:
            ends.append(tok.sep_token_id)  # SFT's end-of-answer marker is sep first (data/sft.py), eos otherwise
        pad = tok.pad_token_id if tok.pad_token_id is not None else (ends[0] if ends else mask_id)
        ids = [encode_prompt(tok, p, chat) for p in prompts]
        return sample(self.model_fn, ids, config, mask_token_id=mask_id, pad_token_id=pad, end_token_ids=ends,
                      max_length=self.max_length, device=self.device, cache=self.cache(config))

    def decode(self, output: GenerationOutput) -> list[str]:
        """Each answer as text (up to its end token)."""
        return [self.tokenizer.decode(a, skip_special_tokens=True).strip() for a in output.answers]

    def generate(self, prompts: Sequence[str], config: SamplerConfig, chat: bool = False,
                 end_tokens: Sequence[str] | None = None) -> list[str]:
        """Sample and decode: one answer string per prompt."""
        return self.decode(self.run(prompts, config, chat, end_tokens))
