"""The torch-free catalog of what exists: model ids, families, sampler names, checkpoint and LoRA files."""
