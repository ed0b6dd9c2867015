"""Record plumbing shared by the stages: the secret helpers that parse and context use.

The finding builder (typed access to report data, severities, identifiers, the fingerprint,
finalize and dedup) lives in secai.parsing.finding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


# ---------------------------------------------------------------- secrets

REDACTED = "[REDACTED]"


def secret_digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def redact(text_value: str, secrets: Iterable[str]) -> str:
    """`text_value` with every occurrence of each secret (4+ characters) replaced by [REDACTED]."""
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text_value = text_value.replace(secret, REDACTED)
    return text_value
