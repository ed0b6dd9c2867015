"""Configuration, in layers: config/secai.yaml holds every default (the only place they live; a wheel
ships it as the package data secai/defaults/secai.yaml); a user file may set any subset of it:
`use(FILE)` (which `--config FILE` calls), else SECAI_CONFIG=FILE, else ~/.config/secai/secai.yaml
($XDG_CONFIG_HOME/secai/secai.yaml) when it exists; SECAI_<SECTION>_<KEY> environment variables
override both; command-line flags override all.

Each setting has the type of its shipped default. The `types:` section of secai.yaml declares it
where the default does not show it: a null default (null then stays allowed) or one string that may
also be a list of strings. An environment value is read as that type, never as YAML: an integer, a
number, true/false (also 1/0, yes/no, on/off), a string as it is (SECAI_SPLIT_NAME=yes is "yes"), a
list as comma-separated strings; an empty value is null where null is allowed. RULES adds the ranges
and choices of the settings the code uses without checking them again (secai-lora's are checked by
secai.training.settings.Settings.check).

Every problem is a ConfigError naming the setting and where its value came from —
`config/secai.yaml:9: parse.max_file_mb: expected a number, got 'abc'` or
`SECAI_PARSE_MAX_FILE_MB: expected a number, got 'abc'`. `problems()` lists them all (secai-doctor);
`get` raises the first one that concerns it: a file that cannot be read or parsed, an unknown section,
key or SECAI_* variable, or the value of that very setting.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

from secai.errors import InputError
from secai.files import shipped

_ABOVE = Path(__file__).resolve().parents[2]
# The source checkout this secai runs from (make, bin/ and the editable install use one), or None when
# it is an installed package: only conveniences of a checkout hang on it (build/, .scanners/, the daemon).
CHECKOUT = _ABOVE if (_ABOVE / "pyproject.toml").is_file() and (_ABOVE / "Makefile").is_file() else None
SHIPPED = shipped("defaults", "secai.yaml")
CHOOSER = "SECAI_CONFIG"
USER_FOLDER = "user config folder"  # what user_file says chose the file found in the user's config folder
ALIASES = {"SECAI_MODELS_DIR": ("paths", "models_dir")}  # short names; they win over SECAI_<SECTION>_<KEY>
KINDS = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
         "list": "a list of strings", "str or list": "a string or a list of strings"}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
INTEGER = re.compile(r"[+-]?[0-9]+")


def _fraction(v) -> bool:
    return 0 <= v < 1


# (test, reason) per setting: what a value of the right type must also be
RULES = {
    "parse.max_file_mb": (lambda v: v > 0, "must be positive"),
    "parse.max_zip_ratio": (lambda v: v > 0, "must be positive"),
    "parse.max_instances": (lambda v: v > 0, "must be positive"),
    "analyze.backend": (lambda v: v in ("kb", "mlx"), "must be kb or mlx"),
    "analyze.batch_size": (lambda v: v >= 1, "must be at least 1"),
    "analyze.max_tokens": (lambda v: v >= 1, "must be at least 1"),
    "analyze.workers": (lambda v: v >= 0, "must be >= 0"),
    "analyze.context_lines": (lambda v: v >= 0, "must be >= 0"),
    "analyze.similar": (lambda v: v >= 0, "must be >= 0"),
    "split.valid": (_fraction, "must be in [0, 1)"),
    "split.test": (_fraction, "must be in [0, 1)"),
    "split.replay_fraction": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "split.group_by": (lambda v: v in ("finding", "rule"), "must be finding or rule"),
    "push.revision": (lambda v: v != "", "must not be empty"),
    "fetch.max_runs": (lambda v: v >= 1, "must be at least 1"),
    "fetch.retries": (lambda v: v >= 0, "must be >= 0"),
    "fetch.backoff_s": (lambda v: v >= 0, "must be >= 0"),
    "fetch.lookback_hours": (lambda v: v >= 0, "must be >= 0"),
    "fetch.max_wait_s": (lambda v: v >= 0, "must be >= 0"),
    "fetch.timeout_s": (lambda v: v > 0, "must be positive"),
    "fetch.max_artifact_mb": (lambda v: v > 0, "must be positive"),
    "daemon.interval_s": (lambda v: v >= 1, "must be at least 1"),
    "verify.timeout": (lambda v: v > 0, "must be positive"),
}


class ConfigError(InputError):
    """A setting that cannot be used: `file` is the config file or environment variable it came from
    (`env` tells which), `setting` its `section.key` (None: a problem of the file or variable itself)."""

    def __init__(self, where: str, line: int | None, reason: str, setting: str | None = None, env: bool = False):
        super().__init__(where, line, reason)
        self.setting, self.env = setting, env


class _Bad(ValueError):
    """A value's problem, before it is told where the value came from."""


@dataclass
class _Origin:
    where: str             # a file as shown, or the environment variable
    line: int | None = None
    env: bool = False

    def error(self, setting: str, reason: str) -> ConfigError:
        return ConfigError(self.where, self.line, reason if self.env else f"{setting}: {reason}", setting, self.env)

    def __str__(self) -> str:
        return f"{self.where}:{self.line}" if self.line else self.where


@dataclass
class Loaded:
    """Every layer read: the values in effect, where each came from, and every problem found."""

    values: dict = field(default_factory=dict)    # section -> key -> value in effect
    defaults: dict = field(default_factory=dict)  # section -> key -> the shipped value
    kinds: dict = field(default_factory=dict)     # section.key -> a name in KINDS
    nullable: set = field(default_factory=set)    # section.key whose default is null
    origins: dict = field(default_factory=dict)   # section.key -> _Origin of the value in effect
    files: list = field(default_factory=list)     # the files read, as shown
    fatal: list = field(default_factory=list)     # ConfigErrors that spoil every setting
    bad: dict = field(default_factory=dict)       # section.key -> the ConfigError of its value in effect
    overridden: list = field(default_factory=list)  # ConfigErrors of values a later layer replaced


_chosen: Path | None = None


def use(path) -> None:
    """Read settings from FILE (over the shipped defaults) instead of $SECAI_CONFIG's; None: back to it."""
    global _chosen
    _chosen = None if path is None else Path(path)
    load.cache_clear()


def user_folder_file() -> Path:
    """Where a user's own settings are found when nothing else chooses a file: secai/secai.yaml in
    $XDG_CONFIG_HOME, else in ~/.config."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "secai" / "secai.yaml"


def user_file() -> tuple[Path, str] | None:
    """The user file in effect and what chose it (`--config`, SECAI_CONFIG or USER_FOLDER: the
    user's config folder has one), or None."""
    if _chosen is not None:
        return _chosen, "--config"
    if os.environ.get(CHOOSER):
        return Path(os.environ[CHOOSER]), CHOOSER
    found = user_folder_file()
    return (found, USER_FOLDER) if found.is_file() else None


def _shown(path: Path) -> str:
    """A shipped file as messages show it: relative to the checkout (config/secai.yaml), else in full."""
    try:
        return str(path.resolve().relative_to(CHECKOUT)) if CHECKOUT else str(path)
    except ValueError:
        return str(path)


def _show(value) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind_of(value) -> str | None:
    for kind, types in (("bool", bool), ("int", int), ("float", float), ("str", str), ("list", list)):
        if isinstance(value, types):
            return kind
    return None


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _typed(kind: str, value, nullable: bool):
    """`value` (from YAML) as a `kind` setting; _Bad when it is not one."""
    if value is None and nullable:
        return None
    ok = {"bool": lambda v: isinstance(v, bool),
          "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          "str": lambda v: isinstance(v, str),
          "list": _strings,
          "str or list": lambda v: isinstance(v, str) or _strings(v)}[kind](value)
    if not ok:
        raise _Bad(f"expected {KINDS[kind]}, got {_show(value)}")
    return float(value) if kind == "float" else value


def _from_env(kind: str, text: str, nullable: bool):
    """An environment variable's text as a `kind` setting; _Bad when it is not one."""
    if text == "" and nullable:
        return None
    word = text.strip().lower()
    if kind == "bool" and word in TRUE + FALSE:
        return word in TRUE
    if kind == "int" and INTEGER.fullmatch(text.strip()):
        return int(text)
    if kind == "float":
        try:
            number = math.nan if "_" in text else float(text)  # Python reads 1_000; a setting does not
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if kind in ("str", "str or list"):
        return text
    if kind == "list":
        return [part.strip() for part in text.split(",") if part.strip()]
    extra = " (or 1/0, yes/no, on/off)" if kind == "bool" else ""
    raise _Bad(f"expected {KINDS[kind]}{extra}, got {_show(text)}")


def _check(name: str, value):
    test, reason = RULES.get(name, (None, None))
    if test is not None and value is not None and not test(value):
        raise _Bad(f"{reason}, got {_show(value)}")
    return value


def _named(loader, mapping, where: str, problems: list, noun: str, section: str = ""):
    """(line, name, value node) of each entry of a YAML mapping (the file's sections, or a
    section's settings) that a string names for the first time; each other entry is a problem."""
    seen: dict[str, int] = {}
    for knode, vnode in mapping.value:
        line, name = knode.start_mark.line + 1, loader.construct_object(knode, deep=True)
        if not isinstance(name, str):
            why = f"{section + ': ' if section else ''}{_show(name)}: a {noun} name must be a string"
        elif name in seen:
            why = f"{section + '.' if section else ''}{name}: set twice (first at line {seen[name]})"
        else:
            seen[name] = line
            yield line, name, vnode
            continue
        problems.append(ConfigError(where, line, why))


def _parse(path: Path, where: str, chooser: str | None) -> tuple[dict, list]:
    """({section: (line, {key: (line, value)})}, problems) of one YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        named = chooser in ("--config", CHOOSER)
        return {}, [ConfigError(where, None, why + (f" (the file {chooser} names)" if named else ""))]
    loader = yaml.SafeLoader(text)
    tree, problems = {}, []
    try:
        root = loader.get_single_node()
        if root is None:
            return {}, []
        if not isinstance(root, yaml.MappingNode):
            return {}, [ConfigError(where, root.start_mark.line + 1, "expected sections of `key: value` settings")]
        for line, section, vnode in _named(loader, root, where, problems, "section"):
            if not isinstance(vnode, yaml.MappingNode):
                if loader.construct_object(vnode) is not None:
                    problems.append(ConfigError(where, line, f"{section}: expected a mapping of settings"))
                tree[section] = (line, {})
                continue
            tree[section] = (line, {key: (kline, loader.construct_object(v, deep=True))
                                    for kline, key, v in _named(loader, vnode, where, problems, "setting", section)})
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        why = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return {}, [ConfigError(where, mark.line + 1 if mark else None, f"not valid YAML: {why}")]
    finally:
        loader.dispose()
    return tree, problems


def _unknown(where: str, line: int | None, what: str, name: str, known) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    return ConfigError(where, line, f"{what}" + (f" (did you mean {close[0]}?)" if close else ""))


def _set(st: Loaded, section: str, key: str, origin: _Origin, convert) -> None:
    """Put one layer's value of section.key in effect, or record why it cannot be."""
    name = f"{section}.{key}"
    try:
        value = _check(name, convert(st.kinds[name], name in st.nullable))
    except _Bad as bad:
        problem = origin.error(name, str(bad))
        if name in st.bad:
            st.overridden.append(st.bad[name])
        st.bad[name] = problem
        return
    if name in st.bad:
        st.overridden.append(st.bad.pop(name))
    st.values[section][key], st.origins[name] = value, origin


def _shipped(st: Loaded) -> None:
    where = _shown(SHIPPED)
    tree, st.fatal = _parse(SHIPPED, where, None)
    st.files.append(where)
    types = {name: (line, kind) for name, (line, kind) in tree.pop("types", (0, {}))[1].items()}
    for section, (_, keys) in tree.items():
        st.values[section], st.defaults[section] = {}, {}
        for key, (line, value) in keys.items():
            name = f"{section}.{key}"
            kind = types.pop(name, (line, _kind_of(value)))[1]
            if kind not in KINDS:
                why = "has no type: declare it in types:" if kind is None else f"unknown type {kind!r}"
                st.fatal.append(ConfigError(where, line, f"{name}: {why} ({', '.join(KINDS)})"))
                continue
            st.kinds[name] = kind
            if value is None:
                st.nullable.add(name)
            st.defaults[section][key] = value
            _set(st, section, key, _Origin(where, line), lambda k, n, v=value: _typed(k, v, n))
    for name, (line, _) in types.items():
        st.fatal.append(ConfigError(where, line, f"types: {name}: no such setting"))


def _user(st: Loaded, path: Path, chooser: str) -> None:
    where = str(path)
    tree, problems = _parse(path, where, chooser)
    st.files.append(where)
    st.fatal += problems
    for section, (line, keys) in tree.items():
        if section not in st.values:
            st.fatal.append(_unknown(where, line, f"unknown section {section!r}", section, st.values))
            continue
        for key, (kline, value) in keys.items():
            if key not in st.values[section]:
                st.fatal.append(_unknown(where, kline, f"{section}.{key}: unknown setting", f"{section}.{key}",
                                         [f"{section}.{k}" for k in st.values[section]]))
                continue
            _set(st, section, key, _Origin(where, kline), lambda k, n, v=value: _typed(k, v, n))


def _environment(st: Loaded) -> None:
    names = {f"SECAI_{s}_{k}".upper(): (s, k) for s, keys in st.values.items() for k in keys if f"{s}.{k}" in st.kinds}
    names.update(ALIASES)
    for var in sorted(os.environ, key=lambda v: (v in ALIASES, v)):  # an alias last: it wins
        if var in names:
            section, key = names[var]
            _set(st, section, key, _Origin(var, env=True), lambda k, n, t=os.environ[var]: _from_env(k, t, n))
            continue
        section = var[len("SECAI_"):].split("_", 1)[0].lower() if var.startswith("SECAI_") else None
        if section in st.values:
            problem = _unknown(var, None, f"no setting {section}.{var[len(section) + 7:].lower()}", var, names)
            problem.env = True
            st.fatal.append(problem)


def _together(st: Loaded) -> None:
    """Rules over two settings: valid and test must leave something for train."""
    split, names = st.values.get("split", {}), ("split.valid", "split.test")
    if any(n in st.bad or n not in st.kinds for n in names) or split["valid"] + split["test"] < 1:
        return
    origin = next((st.origins[n] for n in reversed(names) if st.origins[n].where != st.files[0]), st.origins[names[0]])
    reason = f"split.valid + split.test = {split['valid']:g} + {split['test']:g} leave nothing for train"
    st.bad["split.valid"] = ConfigError(origin.where, origin.line, reason, "split.valid", origin.env)


@cache
def load() -> Loaded:
    """Every layer read and checked (cached; `load.cache_clear()` reads them again)."""
    st = Loaded()
    _shipped(st)
    chosen = user_file()
    if chosen:
        _user(st, *chosen)
    _environment(st)
    _together(st)
    return st


def problems() -> list[ConfigError]:
    """Every problem: those that spoil every setting first, then each value's (also one a later
    layer overrides)."""
    st = load()
    return st.fatal + list(st.bad.values()) + st.overridden


def get(section: str, key: str):
    """The value of section.key in effect; ConfigError when the config or that value is bad."""
    st = load()
    if st.fatal:
        raise st.fatal[0]
    name = f"{section}.{key}"
    if name in st.bad:
        raise st.bad[name]
    try:
        value = st.values[section][key]
    except KeyError:
        raise KeyError(f"{name}: no such setting in {_shown(SHIPPED)}") from None
    return list(value) if isinstance(value, list) else value


def section(name: str) -> dict:
    """Every setting of one section, {key: value}; ConfigError for the first bad one."""
    st = load()
    if st.fatal:
        raise st.fatal[0]
    if name not in st.values:
        raise KeyError(f"{name}: no such section in {_shown(SHIPPED)}")
    return {key: get(name, key) for key in st.values[name]}


def default(section: str, key: str):
    """The shipped default of section.key (whatever overrides it)."""
    return load().defaults[section][key]


def source(section: str, key: str) -> str:
    """Where the value in effect comes from: FILE:LINE or the environment variable."""
    origin = load().origins.get(f"{section}.{key}")
    return str(origin) if origin else ""


def sections() -> list[str]:
    return list(load().values)


def files() -> list[str]:
    """The files read: the shipped defaults, then the user file if one is chosen."""
    return list(load().files)
