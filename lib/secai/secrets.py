"""Secret patterns: one table that every command publishing text checks against.

    scrub(text)              -> text with every secret below replaced by [REDACTED]
    scrub(text, digests)     -> also every string of 8+ characters whose SHA-256 is one of
                                `digests` (the `secret.sha256` values scanners reported, so a
                                secret one scanner found is blanked where another report quotes it)
    find(text)               -> names of the patterns still present, e.g. ["github-token"]

Each pattern marks the part that is secret (its `secret` group, else the whole match); only that
part is replaced, so `password = "[REDACTED]"` keeps its key and a URL keeps its user and host; in
a private key block each run of key material is replaced, so its lines and comment markers stay.
A match whose secret part is already [REDACTED] is no finding: scrub is idempotent and
find(scrub(text)) == [] for every text. The patterns also match in JSON-escaped text (a value
quoted as \\"...\\" or a key block with \\n escapes), so a rendered JSON document can be checked
as it stands.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from secai.records import REDACTED

_VALUE_END = r"(?![A-Za-z0-9/+=_-])"
_KEY_WORDS = (r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key"
              r"|client[_-]?secret|private[_-]?key|credentials?")
_KEY_START = "(?=[pPsStTaAcC])"  # the keywords' first letters: lets the regex engine skip ahead
_KEY_NEEDLES = ("pass", "pwd", "secret", "token", "key", "credential")


class Pattern(NamedTuple):
    name: str
    regex: re.Pattern
    description: str
    needles: tuple[str, ...]  # lower-case strings of which a text must hold one to be searched (speed)
    keep: re.Pattern | None = None  # values that look assigned but are no secret


def _p(name: str, regex: str, description: str, needles: tuple[str, ...], keep: str | None = None) -> Pattern:
    return Pattern(name, re.compile(regex), description, needles, re.compile(keep) if keep else None)


# a word ("required", "POST", "Pass", "read-only"), a template or variable ("${DB_PASSWORD}",
# "<password>", "{{ token }}", "%(pw)s") or a mask ("****", "xxxxxxxx"): not a credential
_NOT_A_SECRET = r"(?:[a-z]+|[A-Z]+|[A-Z][a-z]+)(?:[_ -][a-z]+)*|[$<{%].*|(.)\1*"


PATTERNS: tuple[Pattern, ...] = (
    _p("private-key",
       r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?P<secret>(?:[^\"'\\]|\\[nrt])*?)"
       r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|(?=[\"']|\\(?![nrt]))|\Z)",
       "the body of a PEM/OpenSSH/PGP private key block (to the end of the text or of the quoted string "
       "when it is cut off)", ("private key",)),
    _p("aws-access-key-id", r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}(?![A-Za-z0-9])",
       "an AWS access key id (AKIA..., temporary ASIA..., and the other unique-id prefixes)",
       ("akia", "asia", "abia", "acca", "agpa", "aida", "aipa", "anpa", "anva", "aroa", "apka", "asca")),
    _p("aws-secret-access-key",
       r"(?=[sS])(?i:secret)_?(?i:access)?_?(?i:key)(?:\\?[\"'])?\s*(?::=|=>|=|:)\s*(?:\\?[\"'])?(?P<secret>[A-Za-z0-9/+=]{40})"
       + _VALUE_END,
       "a 40-character AWS secret access key assigned to a secret-key name", ("secret",)),
    _p("github-token", r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])",
       "a GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
       ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    _p("gitlab-token", r"(?<![A-Za-z0-9_])glpat-[A-Za-z0-9_-]{20,}", "a GitLab personal access token (glpat-)", ("glpat-",)),
    _p("slack-token", r"(?<![A-Za-z0-9])xox[abposre]-[A-Za-z0-9-]{10,}", "a Slack token (xoxb-, xoxp-, xoxa-, ...)", ("xox",)),
    _p("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows)/(?P<secret>[A-Za-z0-9_/+-]{20,})",
       "the secret path of a Slack incoming-webhook URL", ("hooks.slack.com",)),
    _p("google-api-key", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", "a Google API key (AIza...)", ("aiza",)),
    _p("stripe-key", r"(?<![A-Za-z0-9])(?:sk|rk)_live_[0-9A-Za-z]{16,}", "a Stripe live secret or restricted key", ("_live_",)),
    _p("huggingface-token", r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}(?![A-Za-z0-9_])", "a Hugging Face access token (hf_)", ("hf_",)),
    _p("npm-token", r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])", "an npm access token (npm_)", ("npm_",)),
    _p("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
       "a JSON Web Token (header.payload.signature, base64url)", ("eyj",)),
    _p("url-credentials", r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:@/\"'<>\\]+:(?P<secret>[^\s@/\"'<>\\]+)@",
       "the password of a URL with user:password@", ("://",)),
    _p("authorization-header", r"(?i:\b(?:authorization|proxy-authorization)\b\\?[\"']?\s*[:=]\s*\\?[\"']?(?:bearer|basic|token)\s+)"
       r"(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
       "the credentials of an HTTP Authorization header", ("authorization",)),
    _p("secret-assignment",
       rf"{_KEY_START}(?i:(?:{_KEY_WORDS})[\w.-]*)(?:\\?[\"'])?\s*(?::=|=>|=|:)\s*(?P<q>\\?[\"'])(?P<secret>[^\"'\\\s]{{4,}})(?P=q)",
       "a quoted value assigned to a password, secret, token, api_key, ... name (not a plain word, "
       "template or mask)", _KEY_NEEDLES, keep=_NOT_A_SECRET),
    _p("secret-assignment-bare",
       rf"{_KEY_START}(?i:(?:{_KEY_WORDS})[\w.-]*)\s*=\s*(?P<secret>(?=[A-Za-z0-9/+_.=-]*[0-9])(?=[A-Za-z0-9/+_.=-]*[A-Za-z])"
       rf"[A-Za-z0-9/+_.=-]{{8,}}){_VALUE_END}",
       "an unquoted value of 8+ letters and digits assigned with = to such a name (KEY=value, .env style)",
       _KEY_NEEDLES),
)

_KEEP = {p.regex: p.keep for p in PATTERNS if p.keep is not None}
_BY_NEEDLE = tuple((n, tuple(i for i, p in enumerate(PATTERNS) if n in p.needles))
                   for n in dict.fromkeys(n for p in PATTERNS for n in p.needles))
_REDACTED_ONLY = re.compile(r"(?:\[REDACTED\]|\s|\\[nrt])*")
# key material inside a key block: base64 runs of 8+ characters (a run may follow a \n escape of JSON
# text; [REDACTED] is none), replaced one by one so that line breaks and comment markers stay
_KEY_MATERIAL = re.compile(r"(?:(?<=\\[nrt])|(?<![\\A-Za-z0-9+/=]))(?!REDACTED\])[A-Za-z0-9+/=]{8,}")


def _spans(m: re.Match) -> list[tuple[int, int]]:
    """The spans to replace in a match: none when it is already redacted or no secret."""
    if m.re is PATTERNS[0].regex:  # a private key block: its key material
        offset = m.start("secret")
        return [(offset + k.start(), offset + k.end()) for k in _KEY_MATERIAL.finditer(m.group("secret"))]
    start, end = m.span("secret") if "secret" in m.re.groupindex else m.span()
    if _REDACTED_ONLY.fullmatch(m.string, start, end):
        return []
    keep = _KEEP.get(m.re)
    if keep is not None and keep.fullmatch(m.string, start, end):
        return []
    return [(start, end)]


def _replace(regex: re.Pattern, text: str) -> str:
    out, last = [], 0
    for m in regex.finditer(text):
        for start, end in _spans(m):
            out += [text[last:start], REDACTED]
            last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------- values known by their digest

_SPLIT = re.compile(r"""[\s=:,;'"`()\[\]{}<>\\]+""")
_QUOTED = re.compile(r""""((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'""")
_hash_memo: dict[str, str] = {}


def _digest(value: str) -> str:
    d = _hash_memo.get(value)
    if d is None:
        if len(_hash_memo) > 200_000:
            _hash_memo.clear()
        d = _hash_memo[value] = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return d


MIN_HASHED = 8  # shorter "secrets" (bandit's 'Pass', 'POST') are words: blanking them everywhere mangles text


def hashed_values(text: str, digests: Iterable[str], min_length: int = MIN_HASHED) -> set[str]:
    """The strings of `min_length`+ characters in `text` (tokens, quoted strings, whole lines)
    whose SHA-256 is one of `digests`."""
    digests = digests if isinstance(digests, (set, frozenset)) else set(digests)
    if not digests or not text:
        return set()
    found = set()
    for line in text.splitlines() or [text]:
        candidates = {line.strip(), *_SPLIT.split(line)}
        candidates.update(g for m in _QUOTED.finditer(line) for g in m.groups() if g)
        for c in candidates:
            if len(c) >= min_length and c != REDACTED and _digest(c) in digests:
                found.add(c)
    return found


# ---------------------------------------------------------------- the API

def _candidates(text: str) -> list[Pattern]:
    """The patterns worth running on `text`: those with a needle in it, in table order."""
    lower = text.lower()
    hit = set()
    for needle, patterns in _BY_NEEDLE:
        if needle in lower:
            hit.update(patterns)
    return [PATTERNS[i] for i in sorted(hit)]


def scrub(text: str, digests: Iterable[str] = ()) -> str:
    """`text` with every secret pattern's secret, and every string hashed in `digests`, replaced
    by [REDACTED]."""
    if len(text) < 8:  # no pattern or hashed value fits
        return text
    return _scrub(text, digests if isinstance(digests, frozenset) else frozenset(digests))


@lru_cache(maxsize=16384)  # knowledge-base paragraphs and advisories repeat across findings
def _scrub(text: str, digests: frozenset[str]) -> str:
    if digests:
        for value in sorted(hashed_values(text, digests), key=len, reverse=True):
            text = text.replace(value, REDACTED)
    for p in _candidates(text):
        text = _replace(p.regex, text)
    return text


def find(text: str) -> list[str]:
    """Names of the patterns with an unredacted secret in `text` (empty when clean)."""
    if not text:
        return []
    return [p.name for p in _candidates(text) if any(_spans(m) for m in p.regex.finditer(text))]


def scrub_tree(value, digests: Iterable[str] = ()):
    """A copy of a JSON value with every string scrubbed (keys are left as they are)."""
    if isinstance(value, str):
        return scrub(value, digests)
    if isinstance(value, dict):
        return {k: scrub_tree(v, digests) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_tree(v, digests) for v in value]
    return value
