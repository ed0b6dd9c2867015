"""Personal data: the one policy for what in a text names a person. secai.secrets blanks these parts
exactly like secrets (its PATTERNS end with them), and the quality report counts what is left.

- An e-mail address (or ssh user@host) whose domain ends in a public suffix (the Public Suffix
  List's ICANN part), as BigCode's PII pass over The Stack, except example.com/.org/.net and their
  subdomains (.example, .test, .invalid, .localhost are no public suffix) and `git@` (an ssh
  remote's service account). Not addresses: `@app.route`, `@types/node`, `lodash@4.17.21`,
  `x@self.weight` (a matrix product: no real suffix).
- The user name of a home-directory path: /home/NAME, /Users/NAME, C:\\Users\\NAME (scanned code
  that opens '/home/fox/test.yaml', a report written on someone's laptop). Only the name goes, so
  `/home/[REDACTED]/test.yaml` still reads as a path; a placeholder name (`/home/user`,
  `/Users/username`) names nobody and stays.

Each entry is (name, regex, description, needles, keep) in secai.secrets' pattern form: the regex's
`secret` group (else the whole match) is the personal part, `keep(match)` says a match is none.
"""

from __future__ import annotations

from functools import lru_cache

_EXAMPLE_DOMAINS = (".example.com", ".example.org", ".example.net")  # RFC 2606, and their subdomains
PLACEHOLDER_USERS = frozenset({"user", "username", "yourname", "your-name", "your_name", "name", "me", "you",
                               "someone", "example", "foo", "john", "jdoe", "janedoe", "johndoe"})


@lru_cache(maxsize=1)
def _suffixes():
    from publicsuffixlist import PublicSuffixList
    return PublicSuffixList(only_icann=True)


def _keep_email(m) -> bool:
    domain = m.group("domain").lower()
    return (m.group("local").lower() == "git" or ("." + domain).endswith(_EXAMPLE_DOMAINS)
            or _suffixes().publicsuffix(domain, accept_unknown=False) is None)


def _keep_home(m) -> bool:
    return m.group("secret").lower() in PLACEHOLDER_USERS


HOME = r"(?:(?<![\w.~-])/home/|(?<![\w.~-])/Users/|(?<![\w])[A-Za-z]:(?:\\\\?|/)Users(?:\\\\?|/))"
PATTERNS = (
    ("email-address", r"(?<![\w.%+-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}+)@"
     r"(?P<domain>(?:[A-Za-z0-9][A-Za-z0-9-]{0,62}+\.){1,8}+[A-Za-z]{2,24}+)(?![\w-])",
     "an e-mail address at a real domain (personal data, not an example domain)", ("@",), _keep_email),
    ("home-directory", HOME + r"(?P<secret>[A-Za-z0-9_][\w.-]{0,63}+)",
     "the user name of a home-directory path (/home/NAME, /Users/NAME, C:\\Users\\NAME; not a placeholder name)",
     ("/home/", "/users/", "\\users"), _keep_home),
)
