"""Untrusted text — scanner reports, the code they point at, model replies — made unable to act.

Such text ends up in prompts, in training examples and in published files. Each way it could act
there has one function here, and every output uses it:

- `neutralise(text)`: chat-template control tokens (EOS, role markers) in the text are defused, so a
  tokenizer cannot turn them into real special tokens inside a prompt or the span a loss covers.
- `data(text)`: untrusted text as a `<<<DATA … DATA>>>` block of a prompt: neutralised, and unable
  to close its block (both prompts, secai.analysis.mlx and secai.dataset.examples, use it);
  `inline(text)` the same for a prompt line outside a block (a heading that names a file).
- `quote(text)`: scanner prose in an assistant turn only as a quotation, one line, capped at
  QUOTE_CHARS; the caller attributes it ("semgrep says: “…”"), so it is never the model's own voice.
- `http_url(value)` / `http_links(values)`: links are kept only when they are absolute http(s) URLs.

How a token is defused: a space goes in after its first character (`<|endoftext|>` becomes
`< |endoftext|>`, `[INST]` becomes `[ INST]`). A reader still sees what was written and that it was
changed, and no tokenizer turns it back: an added token matches its exact characters, normalizers
(NFKC, lower-casing, stripping control and zero-width characters, the one-space-to-▁ rule of
SentencePiece) never delete an inner space, which an invisible or look-alike character could not
promise. The name between the delimiters may hold no opening delimiter, so no token can start
inside a defused one and one pass is a fixed point: `neutralise(neutralise(t)) == neutralise(t)`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

# Delimiters and their compatibility twins, which NFKC (used by some tokenizers) folds into them.
_LT, _GT, _BAR, _LB, _RB = "<＜﹤", ">＞﹥", "|｜", "[［", "]］"
_NAME = rf"[^\s{re.escape(_LT + _GT + _BAR + _LB + _RB)}]{{1,64}}"  # no delimiter inside a name
# The control-token families of common base models' tokenizers:
# - `<|name|>`: OLMo-2 and secai's tiny model (<|endoftext|>, <|pad|>, <|system|>, <|user|>,
#   <|assistant|>), ChatML (<|im_start|>, <|im_end|>), Llama 3 (<|begin_of_text|>, <|eot_id|>,
#   <|start_header_id|>, <|end_header_id|>), Phi-3 (<|end|>), GPT (<|endofprompt|>), DeepSeek
#   (<｜begin▁of▁sentence｜>, full-width bars) — any name, so a family's unlisted tokens are covered too;
# - SentencePiece and Gemma tags: <s>, </s>, <unk>, <pad>, <bos>, <eos>, <mask>, <start_of_turn>, <end_of_turn>;
# - Llama 2 and Mistral markers: <<SYS>>, <</SYS>>, [INST], [/INST], [SYSTEM_PROMPT], [TOOL_CALLS], ...
CONTROL_TOKEN = re.compile(
    rf"[{_LT}][{_BAR}]{_NAME}[{_BAR}][{_GT}]"
    rf"|[{_LT}]/?(?:s|unk|pad|bos|eos|mask|start_of_turn|end_of_turn)[{_GT}]"
    rf"|[{_LT}]{{2}}/?SYS[{_GT}]{{2}}"
    rf"|[{re.escape(_LB)}]/?(?:INST|SYSTEM_PROMPT|TOOL_CALLS|AVAILABLE_TOOLS|TOOL_RESULTS)[{re.escape(_RB)}]",
    re.IGNORECASE)  # a tokenizer that lower-cases before matching would take <|EndOfText|> too

DATA_OPEN, DATA_CLOSE = "<<<DATA", "DATA>>>"
QUOTE_CHARS = 400  # the most characters of one scanner text quoted in an assistant turn


def neutralise(text: str) -> str:
    """`text` with every chat-template control token defused (see the module's docstring)."""
    return CONTROL_TOKEN.sub(lambda m: m[0][0] + " " + m[0][1:], text)


def inline(text: str) -> str:
    """Untrusted text for a prompt: neutralised, and unable to open or close a data block."""
    return neutralise(text).replace("<<<", "< < <").replace(">>>", "> > >")


def data(text: str) -> str:
    """Untrusted text as a prompt's data block, which nothing in the text can close or escape."""
    return f"{DATA_OPEN}\n{inline(text)}\n{DATA_CLOSE}"


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` as one quotation “…”: neutralised, on one line, with no closing mark of its own (curly
    double quotes inside become straight ones) and cut at a word after `limit` characters (…)."""
    text = " ".join(neutralise(text).replace("“", '"').replace("”", '"').split())
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " …"
    return f"“{text}”"


def http_url(value) -> str | None:
    """`value` when it is an absolute http(s) URL with a host, and nothing in it can break out of a
    link (whitespace, quotes, angle brackets, backslashes, control characters); else None."""
    return _http_url(value) if isinstance(value, str) else None


@lru_cache(maxsize=4096)  # a report repeats each rule's few links in all its findings
def _http_url(value: str) -> str | None:
    value = value.strip()
    if not value or any(c.isspace() or not c.isprintable() or c in '<>"{}|\\^`' for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme.lower() in ("http", "https") and parts.hostname else None


def http_links(values) -> list[str]:
    """The http(s) URLs of `values` (see http_url), in order, without duplicates."""
    return list(dict.fromkeys(u for u in map(http_url, values or ()) if u))
