"""Parts shared by model families: norms, activations, MLM head, init."""
