"""Masked-diffusion text generation: the iterative-unmasking sampler, model loading, and text in/out.

    from bertforge.generation import SamplerConfig, TextGenerator
    gen = TextGenerator.from_pretrained("runs/<run>/hf")
    print(gen.generate(["ROMEO:"], SamplerConfig(max_new_tokens=64, steps=32, block_length=32)))

Likelihood for evaluation: :func:`elbo_loglikelihood` (Monte-Carlo ELBO of a continuation); the lm-eval-harness
model ``bertforge_mdlm`` lives in :mod:`bertforge.generation.lm_eval_adapter` (optional dependency lm-eval).
"""

from bertforge.generation.likelihood import ELBOConfig, LikelihoodEstimate, elbo_loglikelihood
from bertforge.generation.loading import load_masked_lm, logits_fn
from bertforge.generation.sampler import GenerationOutput, ModelFn, SamplerConfig, sample
from bertforge.generation.text import TextGenerator, encode_prompt, end_token_ids

__all__ = ["ELBOConfig", "GenerationOutput", "LikelihoodEstimate", "ModelFn", "SamplerConfig", "TextGenerator",
           "elbo_loglikelihood", "encode_prompt", "end_token_ids", "load_masked_lm", "logits_fn", "sample"]
