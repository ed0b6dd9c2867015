"""Analysis backends: `kb` (knowledge base, offline) and `mlx` (a language model)."""
