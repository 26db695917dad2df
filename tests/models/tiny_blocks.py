"""Tiny model blocks of every family (and ModernBERT through hf_bert), shared by the loss and head tests."""

TINY = {
    "flexbert": {"model_config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=40, local_attention_window=6)},
    "m2_bert": {"model_config": dict(hidden_size=32, num_hidden_layers=2, intermediate_size=48,
                                     max_position_embeddings=64, filter_order=16)},
    "hf_bert": {"model_config": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=40, max_position_embeddings=64)},
    "modernbert": {"model_type": "modernbert", "model_config": dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=40, local_attention=8,
        max_position_embeddings=64)},
}
FAMILIES = ["flexbert", "m2_bert", "hf_bert", "modernbert"]
