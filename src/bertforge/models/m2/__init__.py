"""M2-BERT: the Monarch Mixer encoder (implicit long convolutions + block-diagonal MLPs)."""
