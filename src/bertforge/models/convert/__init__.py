"""Weight and config maps between our families and Hugging Face formats (kept beside the models)."""
