"""secai: security-scanner output to explained findings, training data and fine-tuned open models."""

__version__ = "0.1.0"
