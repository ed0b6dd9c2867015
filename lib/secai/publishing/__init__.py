"""Publishing: the Hugging Face Hub and SARIF."""
