"""Secrets: the one policy for what is a secret and how it is blanked. Every command that reads or
writes text uses it: secai-parse (each finding), secai-analyze (code context, analyses),
secai-narrate, secai-sarif, and the checks of secai-split and secai-push.

    scrub(text)              -> text with every secret below replaced by [REDACTED]
    scrub(text, digests)     -> also every string of 8+ characters whose SHA-256 is one of
                                `digests` (the `secret.sha256` values scanners reported, so a
                                secret one scanner found is blanked where another report quotes it)
    find(text)               -> names of the patterns still present, e.g. ["github-token"]
    scrub_tree / find_tree   -> the same over every string (and key) of a JSON value
    redact(text, values)     -> text with each known value (4+ characters) replaced
    secret_digest(value)     -> the SHA-256 a finding keeps instead of its secret (secret.sha256)

Each pattern marks the part that is secret (its `secret` group, else the whole match); only that
part is replaced, so `password = "[REDACTED]"` keeps its key, a URL its user and host, a cookie
header its cookie names, a connection string its other fields; in a private key block each run of
key material is replaced, so its lines and comment markers stay. A match whose secret part is
already [REDACTED] is no finding: scrub is idempotent and find(scrub(text)) == [] for every text.
The patterns also match in JSON-escaped text (a value quoted as \\"...\\" or a key block with \\n
escapes), so a rendered JSON document can be checked as it stands.

Not secrets (left as they are): prose that mentions a password, names of secrets (`password_hash`,
`os.environ["PASSWORD"]`, `${{ secrets.X }}`, `secret_name: db-creds-v2`), templates and
placeholders (`${DB_PASSWORD}`, `<your-password>`, `{{ token }}`, `%(pw)s`), masks (`****`), plain
words (`required`, `changeme`: a well-known default is no secret, and the finding that reports it
reads better with it), unquoted values without both a letter and a digit or symbol, and values of
keys that name a hash, digest, file, path, id, length or other property of a secret.

Personal data is blanked the same way (secai.personal: e-mail addresses at real domains, the user
name of a home-directory path), by the same patterns, after the secrets.

Linear time: every repetition is bounded by a constant or possessive (nothing is re-scanned after
a failed match), no quantifier is nested in an unbounded one, and a pattern runs only on a text
that holds one of its needles. Inputs of megabytes take time proportional to their length
(tests/test_secrets.py runs adversarial ones; benchmarks/bench_secrets.py measures them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import NamedTuple

from secai import personal

REDACTED = "[REDACTED]"


def secret_digest(value: str) -> str:
    """The SHA-256 (hex) of a secret: what a finding keeps of it (`secret.sha256`)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def redact(text: str, values: Iterable[str]) -> str:
    """`text` with every occurrence of each known secret value (4+ characters) replaced."""
    for value in sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def forms(values: Iterable[str]) -> set[str]:
    """Each value as written and backslash-escaped, as code snippets may quote it."""
    return {f for v in values if v for f in (v, v.encode("unicode_escape").decode("ascii"))}


def quoted_secret(message: str, prefix: str) -> tuple[str, str]:
    """(the secret a scanner message quotes as `<prefix>'<secret>'`, the message with it replaced),
    or ("", message) when the message is not of that shape (Bandit's hardcoded-password tests)."""
    if message.startswith(prefix + "'") and message.endswith("'") and len(message) > len(prefix) + 2:
        return message[len(prefix) + 1:-1], f"{prefix}'{REDACTED}'"
    return "", message


# ---------------------------------------------------------------- the patterns

class Pattern(NamedTuple):
    name: str
    regex: re.Pattern
    description: str
    needles: tuple[str, ...]  # lower-case strings of which a text must hold one to be searched
    keep: Callable[[re.Match], bool] | None = None  # True: what matched is no secret
    inner: re.Pattern | None = None  # the secrets are these matches inside the outer `secret` group


_KEY_WORDS = (r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key"
              r"|client[_-]?secret|private[_-]?key|credentials?|account[_-]?key")
_KEY_START = "(?=[pPsStTaAcC])"  # the keywords' first letters: lets the regex engine skip ahead
_KEY_NEEDLES = ("pass", "pwd", "secret", "token", "key", "credential")
_KEY = rf"{_KEY_START}(?P<key>(?i:{_KEY_WORDS})[\w.-]{{0,40}}+)(?:\\?[\"'])?[ \t]{{0,8}}(?::=|=>|=|:)[ \t]{{0,8}}"
# a key that names a property of a secret, not the secret: password_hash, token_url, secret_name
_KEY_NOT_SECRET = re.compile(r"(?i:(?:hash|digest|sha\d{0,3}|md5|checksum)|[_.-](?:name|id|file|path|env|length|len|"
                             r"policy|type|field|param|prompt|label|ttl|timeout|expiry|expires|url|uri|endpoint|header|"
                             r"format|count|size|version|rotation|store|manager|ref|arn|provider))$")
# a word ("required", "POST", "Pass", "read-only"), a template or variable ("${DB_PASSWORD}",
# "<password>", "{{ token }}", "%(pw)s"), a mask ("****", "xxxxxxxx") or an attribute (self.pw2)
_NOT_A_SECRET = re.compile(r"(?:[a-z]+|[A-Z]+|[A-Z][a-z]+)(?:[_ -][a-z]+){0,8}|[$<{%].*|(.)\1*|\s*"
                           r"|[a-z_][a-z0-9_]{0,40}(?:\.[a-z_][A-Za-z0-9_]{0,40}){1,4}", re.S)
_TEMPLATE = re.compile(r"[$<{%].*|(.)\1*|\s*", re.S)  # where any value is a secret (connection strings, flags)
_BARE = r"[^\s\"'<>,;:=()\[\]{}$%`\\]"  # a character of an unquoted value (base64 padding may follow)
_COOKIE_ATTRS = {"path", "domain", "expires", "max-age", "samesite", "secure", "httponly", "priority",
                 "version", "comment", "partitioned"}
_SESSIONISH = re.compile(r"(?i:sess|sid|auth|token|jwt|remember|login|csrf|xsrf|key|secret|pass|user)")


def _value(m: re.Match, group: str = "secret") -> str:
    return m.group(group) or ""


def _keep_assigned(m: re.Match) -> bool:
    return bool(_KEY_NOT_SECRET.search(m.group("key"))) or bool(_NOT_A_SECRET.fullmatch(_value(m)))


def _keep_template(m: re.Match) -> bool:
    return bool(_TEMPLATE.fullmatch(_value(m)))


def _keep_word(m: re.Match) -> bool:
    return bool(_NOT_A_SECRET.fullmatch(_value(m)))


def _keep_cli(m) -> bool:  # a --flag's value may be a metavar (--password PASSWORD); -pPASS is a secret
    return bool((_NOT_A_SECRET if m.match.group("flag") is not None else _TEMPLATE).fullmatch(_value(m)))


def _keep_xml(m: re.Match) -> bool:
    tag = m.group("tag").rsplit(":", 1)[-1]
    named = re.search(rf"(?i:{_KEY_WORDS})", tag)
    return not named or bool(_KEY_NOT_SECRET.search(tag)) or bool(_NOT_A_SECRET.fullmatch(_value(m).strip()))


def _keep_cookie(m: re.Match) -> bool:
    name, value = m.group("name"), _value(m)
    if name.lower() in _COOKIE_ATTRS or _TEMPLATE.fullmatch(value):
        return True
    return len(value) < (1 if _SESSIONISH.search(name) else 16)


def _p(name, regex, description, needles, keep=None, inner=None, flags=0) -> Pattern:
    return Pattern(name, re.compile(regex, flags), description, needles, keep,
                   re.compile(inner) if inner else None)


_PEM_LABEL = r"(?:[A-Z0-9]{1,20} ){0,4}PRIVATE KEY(?: BLOCK)?-----"  # after "-----BEGIN " or "-----END "
_CALLS = (r"connect|login|log_in|signin|sign_in|authenticate|(?:http)?(?:basic|digest)?auth|bind|simple_bind_s?"
          r"|getconnection|open_session")
_ARG = r"(?:\\?\"[^\"\\\n]{0,128}+\\?\"|\\?'[^'\\\n]{0,128}+\\?'|[\w.]{1,64}+)"  # JSON-escaped quotes too

PATTERNS: tuple[Pattern, ...] = (
    _p("private-key",
       r"-----BEGIN " + _PEM_LABEL +
       r"(?P<secret>(?:[^\"'\\-]|\\[nrt]|-(?!----(?:BEGIN|END) ))*+)",
       "the body of a PEM/OpenSSH/PGP private key block (to its END line, the next block, the end of "
       "the text or of the quoted string when it is cut off)", ("private key",),
       inner=r"(?:(?<=\\[nrt])|(?<![\\A-Za-z0-9+/=]))(?!REDACTED\])[A-Za-z0-9+/=]{8,}+"),
    _p("aws-access-key-id", r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}(?![A-Za-z0-9])",
       "an AWS access key id (AKIA..., temporary ASIA..., and the other unique-id prefixes)",
       ("akia", "asia", "abia", "acca", "agpa", "aida", "aipa", "anpa", "anva", "aroa", "apka", "asca")),
    _p("aws-secret-access-key",
       r"(?=[sS])(?i:secret)_?(?i:access)?_?(?i:key)(?:\\?[\"'])?\s{0,8}(?::=|=>|=|:)\s{0,8}(?:\\?[\"'])?"
       r"(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=_-])",
       "a 40-character AWS secret access key assigned to a secret-key name", ("secret",)),
    _p("github-token", r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?![A-Za-z0-9_])",
       "a GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_)",
       ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")),
    _p("gitlab-token", r"(?<![A-Za-z0-9_])glpat-[A-Za-z0-9_-]{20,255}", "a GitLab personal access token (glpat-)", ("glpat-",)),
    _p("slack-token", r"(?<![A-Za-z0-9])xox[abposre]-[A-Za-z0-9-]{10,255}", "a Slack token (xoxb-, xoxp-, xoxa-, ...)", ("xox",)),
    _p("slack-webhook", r"https://hooks\.slack\.com/(?:services|workflows)/(?P<secret>[A-Za-z0-9_/+-]{20,255})",
       "the secret path of a Slack incoming-webhook URL", ("hooks.slack.com",)),
    _p("google-api-key", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", "a Google API key (AIza...)", ("aiza",)),
    _p("stripe-key", r"(?<![A-Za-z0-9])(?:sk|rk)_live_[0-9A-Za-z]{16,255}", "a Stripe live secret or restricted key", ("_live_",)),
    _p("huggingface-token", r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,255}(?![A-Za-z0-9_])", "a Hugging Face access token (hf_)", ("hf_",)),
    _p("npm-token", r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])", "an npm access token (npm_)", ("npm_",)),
    _p("pypi-token", r"(?<![A-Za-z0-9_-])pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{40,255}", "a PyPI upload token (pypi-AgEI...)",
       ("pypi-ageicHlwas5vcmc".lower(),)),
    _p("anthropic-key", r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,255}", "an Anthropic API key (sk-ant-...)", ("sk-",)),
    _p("openai-key", r"(?<![A-Za-z0-9_-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,255}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})",
       "an OpenAI API key (sk-proj-..., sk-...T3BlbkFJ...)", ("sk-", "t3blbkfj")),
    _p("sendgrid-key", r"(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}(?![A-Za-z0-9_-])",
       "a SendGrid API key (SG.<id>.<secret>)", ("sg.",)),
    _p("shopify-token", r"(?<![A-Za-z0-9_])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?![A-Za-z0-9_])", "a Shopify access token (shpat_...)",
       ("shp",)),
    _p("azure-storage-key", r"(?i:\b(?:Account|SharedAccess)Key)[ \t]{0,4}=[ \t]{0,4}(?P<secret>[A-Za-z0-9+/]{20,120}={0,2})",
       "an Azure storage or Service Bus key in a connection string (AccountKey=, SharedAccessKey=)",
       ("accountkey", "sharedaccesskey")),
    _p("azure-sas-signature", r"(?<=[?&])sig=(?P<secret>[A-Za-z0-9%+/=]{20,128})", "the signature of an Azure SAS URL",
       ("sig=",)),
    _p("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{8,4096}",
       "a JSON Web Token (header.payload.signature, base64url)", ("eyj",)),
    _p("url-credentials", r"(?<![A-Za-z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s:@/\"'<>\\]{1,128}:(?P<secret>[^\s@/\"'<>\\]{1,256})@",
       "the password of a URL with user:password@", ("://",)),
    _p("authorization-header",
       r"(?i:\b(?:authorization|proxy-authorization)\b\\?[\"']?[ \t]{0,8}[:=][ \t]{0,8}\\?[\"']?(?:bearer|basic|token)[ \t]{1,8})"
       r"(?P<secret>[A-Za-z0-9._~+/=-]{8,4096})",
       "the credentials of an HTTP Authorization header", ("authorization",)),
    _p("cookie", r"(?i:\b(?:set-)?cookie)\\?[\"']?[ \t]{0,8}[:,=][ \t]{0,8}\\?[\"']?(?P<secret>[^\r\n\"'\\]{1,4096})",
       "the values of a Cookie or Set-Cookie header, or of a cookie set in code (session cookies of "
       "any length, others of 16+ characters; attributes such as Path stay)", ("cookie",), keep=_keep_cookie,
       inner=r"(?P<name>[\w.!#$%&*+^|~-]{1,128}+)=(?P<secret>[^;,\s]{1,4096}+)"),
    _p("secret-assignment", _KEY + r"(?P<q>\\?[\"'])(?P<secret>[^\"'\\\s]{4,256})(?P=q)",
       "a quoted value assigned to a password, secret, token, api_key, ... name (not a plain word, "
       "template or mask)", _KEY_NEEDLES, keep=_keep_assigned),
    _p("secret-assignment-bare",
       _KEY + rf"(?P<secret>(?=[A-Za-z0-9]){_BARE}{{8,256}}+={{0,2}}+)(?!{_BARE}|[(\[=])",
       "an unquoted value of 8+ characters with a letter and a digit or symbol assigned to such a name "
       "(KEY=value, .env, YAML `key: value`, Ruby/PHP `key => value`)", _KEY_NEEDLES,
       keep=lambda m: _keep_assigned(m) or not (re.search(r"[A-Za-z]", m.group("secret"))
                                                and re.search(r"[0-9!@#&*^~?]", m.group("secret")))),
    _p("connection-string-password",
       r"(?<![\w-])(?i:password|pwd)[ \t]{0,4}=[ \t]{0,4}(?P<secret>[^;=\"'\s\\]{1,256}+={0,2}+)(?=[ \t]{0,4};)"
       r"|(?<=;)[ \t]{0,4}(?i:password|pwd)[ \t]{0,4}=[ \t]{0,4}(?P<last>[^;=\"'\s\\]{1,256}+={0,2}+)",
       "Password=...; / Pwd=...; in a connection string (ADO.NET, ODBC, JDBC)", ("pass", "pwd"), keep=_keep_template),
    _p("xml-secret", r"<(?P<tag>[\w.:-]{1,60}+)(?:\s[^<>]{0,256}+)?>(?P<secret>[^<]{1,256}+)</(?P=tag)>",
       "the text of an XML element named for a secret (<password>, <apiKey>, <ns:secret>)", ("</",), keep=_keep_xml),
    _p("positional-password",
       rf"(?<![A-Za-z0-9])(?i:{_CALLS})[ \t]{{0,4}}(?:=[ \t]{{0,4}})?\([ \t]{{0,4}}(?:{_ARG}[ \t]{{0,4}},[ \t]{{0,4}}){{1,2}}"
       r"(?P<q>\\?[\"'])(?P<secret>[^\"'\\\n]{4,128}+)(?P=q)[ \t]{0,4}[,)]",
       "a quoted password passed positionally to a connect/login/auth call (connect(host, user, "
       "password), login(user, password), auth=(user, password))",
       ("connect", "login", "log_in", "sign", "auth", "bind", "session"), keep=_keep_word),
    _p("cli-password",
       r"(?<![\w-])(?:mysql(?:dump|admin|import|sh)?|mariadb(?:-dump)?)(?:[ \t]{1,4}+[^\s|;&]{1,100}+){0,8}?[ \t]{1,4}+-p"
       r"(?P<secret>[^\s\"'$<{-][^\s\"']{0,127}+)"
       r"|(?<![\w-])curl(?:[ \t]{1,4}+[^\s|;&]{1,100}+){0,12}?[ \t]{1,4}+(?:-u|--user)(?:[ \t]{1,4}+|=)[\"']?[^\s:\"']{1,128}+:(?P<curl>[^\s\"']{1,256}+)"
       r"|(?<![\w-])sshpass[ \t]{1,4}-p[ \t]{0,4}(?P<sshpass>[^\s\"'$<{-][^\s\"']{0,127}+)"
       r"|(?<![\w-])--(?:[\w]{1,20}-)?(?:password|passwd|token|api-key|secret)(?:=|[ \t]{1,4})(?P<flag>[^\s\"'$<{=-][^\s\"'=]{0,255}+)",
       "a password on a command line: mysql -pPASS, curl -u user:PASS, sshpass -p PASS, --password=PASS",
       ("mysql", "mariadb", "curl", "sshpass", "--"), keep=_keep_cli),
    *(_p(name, regex, description, needles, keep) for name, regex, description, needles, keep in personal.PATTERNS),
)

_GROUPS = ("secret", "last", "curl", "sshpass", "flag")  # the names a pattern's secret part goes by
_BY_NEEDLE = tuple((n, tuple(i for i, p in enumerate(PATTERNS) if n in p.needles))
                   for n in dict.fromkeys(n for p in PATTERNS for n in p.needles))
_REDACTED_ONLY = re.compile(r"(?:\[REDACTED\]|\s|\\[nrt])*+")


def _secret_span(m: re.Match) -> tuple[int, int]:
    for g in _GROUPS:
        if g in m.re.groupindex and m.start(g) >= 0:
            return m.span(g)
    return m.span()


class _Part(NamedTuple):  # a match narrowed to its secret, as keep() sees it
    match: re.Match

    def group(self, name="secret"):
        return self.match.group(name) if name != "secret" else self.match.string[slice(*_secret_span(self.match))]


def _spans(p: Pattern, m: re.Match) -> list[tuple[int, int]]:
    """The spans to replace in a match: none when it is already redacted or no secret."""
    start, end = _secret_span(m)
    if p.inner is not None:
        return [(s, e) for k in p.inner.finditer(m.string, start, end) for s, e in [_secret_span(k)]
                if not _REDACTED_ONLY.fullmatch(m.string, s, e) and not (p.keep and p.keep(k))]
    if _REDACTED_ONLY.fullmatch(m.string, start, end):
        return []
    if p.keep is not None and p.keep(_Part(m)):
        return []
    return [(start, end)]


def _replace(p: Pattern, text: str) -> str:
    out, last = [], 0
    for m in p.regex.finditer(text):
        for start, end in _spans(p, m):
            out += [text[last:start], REDACTED]
            last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------- values known by their digest

_SPLIT = re.compile(r"""[\s=:,;'"`()\[\]{}<>\\]++""")
_QUOTED = re.compile(r""""([^"\n]{1,512}+)"|'([^'\n]{1,512}+)'|`([^`\n]{1,512}+)`""")  # each scan ends at the next quote
_unhashed: dict[frozenset[str], set[str]] = {}  # per set of digests: strings known to hash to none of them


MIN_HASHED = 8  # shorter "secrets" (bandit's 'Pass', 'POST') are words: blanking them everywhere mangles text


def hashed_values(text: str, digests: Iterable[str], min_length: int = MIN_HASHED) -> set[str]:
    """The strings of `min_length`+ characters in `text` whose SHA-256 is one of `digests`: its
    tokens, quoted strings, whole lines and the values after a key (`key = value;`)."""
    digests = digests if isinstance(digests, frozenset) else frozenset(digests)
    if not digests or not text:
        return set()
    found = set()
    for line in text.splitlines() or [text]:
        if len(line) >= min_length and (hit := _hashed_in_line(line, digests, min_length)):
            found.update(hit)
    return found


@lru_cache(maxsize=65536)  # a file's lines, and the texts made of them, recur in finding after finding
def _hashed_in_line(line: str, digests: frozenset[str], min_length: int) -> tuple[str, ...]:
    candidates = {line.strip(), *_SPLIT.split(line)}
    candidates.update(g for m in _QUOTED.finditer(line) for g in m.groups() if g)
    at = key_prefix(line)
    if at is not None:
        rest = line[at:].strip()
        candidates.update((rest, rest.rstrip(",;"), rest.strip("\"'`,;")))
    if (clean := _unhashed.get(digests)) is None or len(clean) > 200_000:
        if len(_unhashed) > 16:
            _unhashed.clear()
        clean = _unhashed[digests] = set()
    candidates = {c for c in candidates if len(c) >= min_length and c != REDACTED}  # only these are hashed
    candidates -= clean  # in one set operation: a file's words recur on line after line
    clean.update(c for c in candidates if secret_digest(c) not in digests)
    return tuple(candidates - clean)


_SHA256_FIELD = re.compile(rb'"sha256":"([0-9a-f]{64})"')


def hashed_lines(lines: list) -> list[tuple[int, dict]]:
    """(index, the record scrubbed) for each JSONL line (bytes, sorted keys) that quotes a string
    another line's `secret.sha256` hashes: a secret one report found, quoted by another report."""
    import orjson

    # lines may be memoryviews of a report's buffer: each is copied only while it is looked at, and
    # none when no buffer holds a digest at all (the buffers hold every line: bytes, or views of them)
    buffers = {id(b): b for line in lines if (b := line.obj if type(line) is memoryview else line)}
    if all(b.find(b'"sha256":"') < 0 for b in buffers.values()):
        return []
    digests = frozenset(d.decode() for line in lines if b'"sha256":"' in (raw := bytes(line))
                        for d in _SHA256_FIELD.findall(raw))
    if not digests:
        return []
    return [(i, scrub_tree(orjson.loads(line), digests)) for i, line in enumerate(lines)
            if hashed_values(bytes(line).decode("utf-8", "replace"), digests)]


# ---------------------------------------------------------------- lines of code (secai-analyze's context)

_KEY_PREFIX = re.compile(r"""[ \t]{0,200}+(?:-[ \t]{1,8})?(?P<key>[\w$@.\-\[\]"' ]{1,120}?)[ \t]{0,8}(?::=|=>|=|:(?!//))[ \t]{0,8}""")
_PEM_BEGIN = re.compile("-----BEGIN " + _PEM_LABEL)
_PEM_END = re.compile("-----END " + _PEM_LABEL)


def key_prefix(line: str) -> int | None:
    """Where the value starts in a `key = value` / `key: value` line, or None."""
    m = _KEY_PREFIX.match(line)
    return m.end() if m and re.search(r"\w", m.group("key")) else None


def blank_value(line: str) -> str:
    """A secret's own line with everything after its key replaced (`password: [REDACTED]`); a line
    without a key becomes [REDACTED], its indentation kept; one without a letter or digit (a YAML
    `---` next to the secret, a closing brace) holds no secret and stays."""
    if not re.search(r"[A-Za-z0-9]", line):
        return line
    at = key_prefix(line)
    if at is not None:
        return line[:at] + REDACTED
    return line[:len(line) - len(line.lstrip())] + REDACTED


def pem_rows(lines: list[str]) -> set[int]:
    """1-based numbers of the lines strictly inside multi-line private key blocks."""
    rows, inside = set(), False
    for n, line in enumerate(lines, 1):
        if "PRIVATE KEY-----" not in line:
            if inside:
                rows.add(n)
        elif inside:
            inside = not _PEM_END.search(line)
            if inside:
                rows.add(n)
        elif (m := _PEM_BEGIN.search(line)) and not _PEM_END.search(line, m.end()):
            inside = True
    return rows


def blank_lines(lines: list[str], first: int, *, values: Iterable[str] = (), digests: Iterable[str] = (),
                own: range = range(0), key_rows: set[int] = frozenset(), min_hashed: int = 4) -> list[str]:
    """Lines of a file (numbered from `first`) with their secrets blanked: the known `values`,
    the strings hashed in `digests` (`min_hashed`+ characters: the scanner said they are secrets),
    everything after the key on the rows in `own` (a secret finding's own lines), the rows inside
    private key blocks (`key_rows`, see pem_rows), and every pattern above."""
    known = {v for v in values if v}
    digests = {d.lower() for d in digests if isinstance(d, str) and len(d) == 64}
    if digests:
        known |= hashed_values("\n".join(lines), digests, min_hashed)
    out = []
    for n, line in enumerate(lines, first):
        if n in own:
            line = blank_value(line)
        if known:
            line = redact(line, known)
        if n in key_rows and line.strip():
            line = line[:len(line) - len(line.lstrip())] + REDACTED
        out.append(scrub(line))
    return out


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


@lru_cache(maxsize=65536)  # rule descriptions, knowledge-base paragraphs and advisories repeat across findings
def _scrub(text: str, digests: frozenset[str]) -> str:
    if digests:
        text = redact(text, hashed_values(text, digests))
    for p in _candidates(text):
        text = _replace(p, text)
    return text


def find(text: str) -> list[str]:
    """Names of the patterns with an unredacted secret in `text` (empty when clean)."""
    if not text or len(text) < 8:
        return []
    return [p.name for p in _candidates(text) if any(_spans(p, m) for m in p.regex.finditer(text))]


def scrub_tree(value, digests: Iterable[str] = ()):
    """A copy of a JSON value with every string scrubbed (keys are left as they are)."""
    return _scrub_tree(value, digests if isinstance(digests, frozenset) else frozenset(digests))


def _scrub_tree(value, digests: frozenset[str]):
    t = type(value)
    if t is str:
        return value if len(value) < 8 else _scrub(value, digests)
    if t is dict:
        return {k: _scrub_tree(v, digests) for k, v in value.items()}
    if t is list:
        return [_scrub_tree(v, digests) for v in value]
    return value


def find_tree(value, path: str = "") -> list[tuple[str, list[str]]]:
    """(JSON path, pattern names) for every string, and every key, of a JSON value in which a
    secret is found: `messages[2].content`, `metadata.provenance.branch`."""
    hits = []
    if isinstance(value, str):
        if names := _find_cached(value):
            hits.append((path or "$", sorted(set(names))))
    elif isinstance(value, dict):
        for k, v in value.items():
            where = f"{path}.{k}" if path else str(k)
            if names := _find_cached(str(k)):
                hits.append((where + " (key)", sorted(set(names))))
            hits += find_tree(v, where)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            hits += find_tree(v, f"{path}[{i}]")
    return hits


@lru_cache(maxsize=4096)  # the system prompts many examples share
def _find_cached(text: str) -> tuple[str, ...]:
    return tuple(find(text))


def record_secrets(record: dict) -> list[tuple[str, list[str]]]:
    """find_tree over a record, a message's content named as `messages[i] (role)`: what secai-split
    and secai-push report (and refuse) for an example."""
    out = []
    for where, names in find_tree(record):
        m = re.fullmatch(r"messages\[(\d+)\]\.content", where)
        if m and isinstance(record.get("messages"), list):
            where = f"messages[{m[1]}] ({record['messages'][int(m[1])].get('role', '?')})"
        out.append((where, names))
    return out
