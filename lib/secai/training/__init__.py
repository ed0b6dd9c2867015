"""LoRA fine-tuning through mlx-lm: the engine, a training run, evaluation, the model card, the model store, the tiny test model."""
