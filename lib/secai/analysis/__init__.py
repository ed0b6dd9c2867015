"""Explaining findings: the kb and mlx backends (compose, mlx), the knowledge base (kb/) and its fix
rules (fixrules, fixlines), where a fix lands (placement) and whether the scanner agrees (verify), code
context (context, languages, units), similar findings (similar), and the batches that run them (explain)."""
