"""FlexBERT configuration: every architectural choice is one documented key with a default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bertforge.errors import ConfigError
from bertforge.kernels.select import KernelChoice


@dataclass
class FlexBertConfig(KernelChoice):
    """Architecture of a FlexBERT encoder and its MLM head. Defaults describe ModernBERT-base."""

    vocab_size: int | None = None
    """Embedding rows; null sizes it from the tokenizer, rounded up to ``pad_vocab_to_multiple_of``."""
    pad_vocab_to_multiple_of: int = 64
    hidden_size: int = 768
    num_hidden_layers: int = 22
    num_attention_heads: int = 12
    intermediate_size: int = 1152
    """Width of the MLP hidden layer (of each half of a GLU)."""
    # embeddings
    position_encoding: Literal["rope", "alibi", "learned", "none"] = "rope"
    """RoPE in attention, ALiBi biases, or learned absolute positions added to the embeddings."""
    max_position_embeddings: int = 8192
    """Rows of the learned position table (``position_encoding: learned``)."""
    type_vocab_size: int = 0
    """Token-type (segment) embeddings; 0 turns them off."""
    embedding_norm: bool = True
    embedding_dropout: float = 0.0
    # attention
    rope_theta_global: float = 160000.0
    rope_theta_local: float = 10000.0
    local_attention_window: int | None = 128
    """Total sliding window of local layers (token i sees j when |i-j| <= window/2); null: all global."""
    global_attention_every_n_layers: int = 3
    """Layer i is global when i % n == 0; the others use the sliding window."""
    attention_bias: bool = False
    attention_dropout: float = 0.0
    attention_backend: Literal["auto", "varlen", "sdpa", "flash_attn"] = "auto"
    # mlp
    mlp_type: Literal["mlp", "glu"] = "glu"
    """``glu`` with ``gelu`` is GeGLU, with ``silu`` SwiGLU; ``mlp`` is the classic two-layer MLP."""
    hidden_activation: Literal["gelu", "gelu_tanh", "silu", "relu", "quick_gelu"] = "gelu"
    mlp_bias: bool = False
    mlp_dropout: float = 0.0
    hidden_dropout: float = 0.0
    """Dropout on each block's attention and MLP output before the residual add (BERT: 0.1)."""
    # norms and blocks
    norm_type: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_bias: bool = False
    norm_eps: float = 1e-5
    block_type: Literal["prenorm", "postnorm"] = "prenorm"
    first_layer_attn_norm: bool = False
    """Pre-norm only: normalise layer 0's input (ModernBERT skips it, the embedding norm came just before)."""
    final_norm: bool = True
    # MLM head
    head_dense: bool = True
    head_activation: Literal["gelu", "gelu_tanh", "silu", "relu", "quick_gelu"] = "gelu"
    head_norm: bool = True
    head_bias: bool = False
    tie_word_embeddings: bool = True
    decoder_bias: bool = True
    # initialisation and execution
    init_std: float = 0.02
    init_depth_scaled: bool = True
    """Scale output projections' init std by 1/sqrt(2 * num_hidden_layers)."""
    unpad: bool = True
    """Remove padding after the embeddings so it never enters the layers."""
    kernels: Literal["auto", "torch", "fused"] = "auto"
    """RoPE, norms, GLU and the training MLM loss as fused Triton kernels (liger-kernel + ours) or plain torch ops;
    ``auto``: fused where they can run (a CUDA device with liger-kernel installed), else torch. ``fused`` where they
    cannot run is a config error. Same values either way (float32: within 1e-5)."""
    activation_checkpointing: bool = False
    """Training: recompute each block's activations during the backward pass instead of keeping them
    (less memory for about one more forward's compute); same gradients."""
    activation_checkpointing_every: int = 1
    """With ``activation_checkpointing``: checkpoint block i when i % n == 0 (1: every block)."""

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                "num_attention_heads",
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}",
            )
        if self.position_encoding == "rope" and (self.hidden_size // self.num_attention_heads) % 2:
            raise ConfigError("position_encoding", "RoPE needs an even head dimension")
        if self.local_attention_window is not None and self.local_attention_window < 2:
            raise ConfigError("local_attention_window", f"{self.local_attention_window} must be >= 2 or null")
        if self.global_attention_every_n_layers < 1:
            raise ConfigError("global_attention_every_n_layers", "must be >= 1")
        if self.activation_checkpointing_every < 1:
            raise ConfigError("activation_checkpointing_every", f"{self.activation_checkpointing_every} must be >= 1")
        if not self.unpad and self.attention_backend == "flash_attn":
            raise ConfigError("attention_backend", "flash_attn works on unpadded tokens; set unpad: true")
        if self.attention_backend == "flash_attn":
            from bertforge.ops.attention import flash_attn_missing  # lazy: configs load before any model code

            missing = flash_attn_missing()
            if missing is not None:
                raise ConfigError("attention_backend", f"flash_attn needs flash-attn on a CUDA GPU ({missing}); "
                                  "install it with `pip install -e .[gpu]` on a CUDA machine, or use auto, sdpa or "
                                  "varlen")
        self.check_kernels()
        for key in ("embedding_dropout", "attention_dropout", "mlp_dropout", "hidden_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(key, f"{getattr(self, key)} must be in [0, 1)")

    @property
    def checkpoint_every(self) -> int | None:
        """Checkpoint every n-th block in training (None: activation checkpointing is off)."""
        return self.activation_checkpointing_every if self.activation_checkpointing else None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def attention_half_windows(self) -> list[int | None]:
        """Per layer: how far a token sees to each side (None: global). Used for FLOPs accounting."""
        return [None if self.is_global_layer(i) else self.local_attention_window // 2
                for i in range(self.num_hidden_layers)]

    def is_global_layer(self, layer: int) -> bool:
        """Whether ``layer`` attends globally (vs. the sliding window)."""
        return self.local_attention_window is None or layer % self.global_attention_every_n_layers == 0
