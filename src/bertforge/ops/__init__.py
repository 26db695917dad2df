"""Low-level tensor operations shared by model families (torch only, nothing else of ours)."""
