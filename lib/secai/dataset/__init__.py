"""Training data: examples from analyses, the leak-free split, the dataset card."""
