"""M2-BERT configuration: every architectural choice is one documented key. Defaults describe M2-BERT 80M."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bertforge.errors import ConfigError
from bertforge.kernels.select import KernelChoice
from bertforge.ops.fftconv import BACKENDS


@dataclass
class M2BertConfig(KernelChoice):
    """Architecture of an M2-BERT (Monarch Mixer) encoder and its MLM head."""

    vocab_size: int | None = None
    """Embedding rows; null sizes it from the tokenizer, rounded up to ``pad_vocab_to_multiple_of``."""
    pad_vocab_to_multiple_of: int = 64
    hidden_size: int = 768
    num_hidden_layers: int = 12
    intermediate_size: int = 3072
    """Width of each half of the GLU MLP (the published configs use 4 * hidden_size)."""
    max_position_embeddings: int = 128
    """Rows of the learned position table: the longest sequence (and the filter length unless ``filter_length``)."""
    type_vocab_size: int = 2
    """Token-type (segment) embeddings; 0 turns them off."""
    hidden_dropout: float = 0.1
    """Dropout after the embeddings and inside the MLP (BERT's hidden_dropout_prob)."""
    norm_eps: float = 1e-12
    """LayerNorm eps of the embeddings and the MLP (BERT's layer_norm_eps)."""
    # sequence mixer
    filter_order: int = 128
    """Width of the implicit filter MLP (hyena_filter_order)."""
    filter_emb_dim: int = 5
    """Positional features fed to the filter MLP: t plus (filter_emb_dim - 1) / 2 sin/cos bands; odd, >= 3."""
    filter_inner_layers: int = 2
    """Hidden order x order layers of the filter MLP."""
    filter_sine_freq: float = 10.0
    """Initial frequency of the filter MLP's sine activations (hyena_w)."""
    filter_sine_freq_mod: float = 1.0
    """Fixed (not learned) factor on those frequencies: the activations are sin(mod * freq * x) (hyena_w_mod)."""
    filter_length: int | None = None
    """Positions the implicit filters are laid out on (long_conv_l_max): t runs from 0 to 1 over them and the
    sin/cos features and decay follow; null: max_position_embeddings. No sequence may be longer."""
    filter_decay_fast: float = 0.3
    """Exponential modulation: the fastest channel decays to ``filter_decay_target`` at this fraction of the
    filter length."""
    filter_decay_slow: float = 1.5
    """... and the slowest channel at this fraction."""
    filter_decay_target: float = 1e-2
    bidirectional: bool = True
    """A second (reverse) filter lets every token see the tokens after it."""
    residual_long_conv: bool = True
    """Add a long convolution of the mixer's input (its own filters) to the gated output."""
    short_conv_kernel: int = 3
    """Kernel of the causal depthwise convolution on the projected input."""
    mixer_input_norm: bool = False
    """A LayerNorm (eps 1e-5) on the mixer's input, which feeds both its projections and its residual long
    convolution: the original's legacy ``hyena_training_additions``, used by the released M2-BERT 80M checkpoint."""
    fftconv_backend: Literal["auto", "torch", "direct", "cuda"] = "auto"
    """Long-convolution backend (``bertforge.ops.fftconv``): auto picks the CUDA kernel when built."""
    kernels: Literal["auto", "torch", "fused"] = "auto"
    """Fused Triton kernels (``bertforge.kernels``) for the LayerNorms and the training MLM loss: ``auto`` where
    they can run (CUDA + liger-kernel), ``torch``, or ``fused`` (a config error where they cannot run)."""
    # state mixer (MLP)
    mlp_type: Literal["glu", "mlp"] = "glu"
    """``glu``: GELU(x W_gate) * (x W_value) then W_out; ``mlp``: the classic two-layer GELU MLP."""
    mlp_blocks: int = 4
    """Blocks of the block-diagonal (Monarch) MLP weights; 1 is a dense MLP."""
    # optimizer tags (read by an optimizer that honours per-parameter ``_optim`` dicts)
    filter_lr: float | None = 1e-3
    """Learning rate of the filter MLPs (long_conv_kernel_learning_rate); null: the optimizer's."""
    filter_weight_decay: float = 0.1
    """Weight decay of the filter MLPs (hyena_wd)."""
    pos_features_lr: float = 1e-5
    """Learning rate of the filters' positional features (hyena_lr_pos_emb); 0 freezes them as a buffer."""
    # MLM head
    head_activation: Literal["gelu", "gelu_tanh", "silu", "relu"] = "gelu"
    """Activation of the MLM head's dense transform (the original's hidden_act; gelu is the exact erf GELU)."""
    head_norm_eps: float = 1e-12
    """LayerNorm eps of the MLM head's transform (the original fixes it at 1e-12, whatever norm_eps is)."""
    mlm_targets: Literal["positive", "not_ignored"] = "positive"
    """Tokens the MLM head and loss see: ``positive``, labels > 0 (the original: a label of 0 is never a
    target); ``not_ignored``, every label except -100."""
    # initialisation and execution
    init_std: float = 0.02
    activation_checkpointing: bool = False
    """Training: recompute each block's activations during the backward pass instead of keeping them
    (less memory for about one more forward's compute); same gradients."""
    activation_checkpointing_every: int = 1
    """With ``activation_checkpointing``: checkpoint block i when i % n == 0 (1: every block)."""

    def __post_init__(self) -> None:
        positive = ("hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
                    "filter_order", "short_conv_kernel", "mlp_blocks", "pad_vocab_to_multiple_of",
                    "activation_checkpointing_every")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(key, f"{getattr(self, key)} must be >= 1")
        if self.filter_length is not None and self.filter_length < 1:
            raise ConfigError("filter_length", f"{self.filter_length} must be >= 1 (null: max_position_embeddings)")
        for key in ("filter_sine_freq_mod", "head_norm_eps", "norm_eps"):
            if not getattr(self, key) > 0:
                raise ConfigError(key, f"{getattr(self, key)} must be > 0")
        if self.type_vocab_size < 0 or self.filter_inner_layers < 0:
            key = "type_vocab_size" if self.type_vocab_size < 0 else "filter_inner_layers"
            raise ConfigError(key, f"{getattr(self, key)} must be >= 0")
        if self.filter_emb_dim < 3 or self.filter_emb_dim % 2 == 0:
            raise ConfigError("filter_emb_dim", f"{self.filter_emb_dim} must be odd and >= 3 (t, then sin/cos pairs)")
        for key in ("hidden_size", "intermediate_size"):
            if getattr(self, key) % self.mlp_blocks:
                raise ConfigError("mlp_blocks", f"{key} {getattr(self, key)} is not divisible by mlp_blocks "
                                  f"{self.mlp_blocks}")
        if not 0.0 <= self.hidden_dropout < 1.0:
            raise ConfigError("hidden_dropout", f"{self.hidden_dropout} must be in [0, 1)")
        if not 0.0 < self.filter_decay_fast <= self.filter_decay_slow:
            raise ConfigError("filter_decay_fast", f"need 0 < filter_decay_fast ({self.filter_decay_fast}) <= "
                              f"filter_decay_slow ({self.filter_decay_slow})")
        if not 0.0 < self.filter_decay_target < 1.0:
            raise ConfigError("filter_decay_target", f"{self.filter_decay_target} must be in (0, 1)")
        for key in ("filter_lr", "filter_weight_decay", "pos_features_lr"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ConfigError(key, f"{value} must be >= 0")
        if self.fftconv_backend not in BACKENDS:
            raise ConfigError("fftconv_backend", f"{self.fftconv_backend!r}; choose one of {', '.join(BACKENDS)}")
        self.check_kernels()

    @property
    def checkpoint_every(self) -> int | None:
        """Checkpoint every n-th block in training (None: activation checkpointing is off)."""
        return self.activation_checkpointing_every if self.activation_checkpointing else None
