"""A small TOML writer and reader for training configurations (``RUN/config.toml``).

:func:`dumps_toml` writes scalars, one-line arrays and tables; :func:`loads_toml` reads with
``tomllib`` (Python 3.11+), else ``tomli``, else a parser of the subset that :func:`dumps_toml` writes.
"""

from __future__ import annotations

import json
import math
import re


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        text = repr(value)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return json.dumps(key, ensure_ascii=False)


def dumps_toml(values: dict, header: str = "") -> str:
    """A small TOML writer: scalars, lists and nested tables; ``None`` values are left out."""
    lines = [header.rstrip("\n")] if header else []

    def write_table(table: dict, prefix: tuple):
        scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, dict)]
        tables = [(k, v) for k, v in table.items() if isinstance(v, dict)]
        if prefix:
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_toml_key(p) for p in prefix) + "]")
        for key, value in scalars:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
        for key, value in tables:
            write_table(value, prefix + (key,))

    write_table(values, ())
    return "\n".join(lines) + "\n"


def loads_toml(text: str) -> dict:
    """Parse TOML: ``tomllib`` (Python 3.11+), else ``tomli``, else a parser of the subset that
    :func:`dumps_toml` writes (tables, scalars, one-line arrays). Raises ValueError."""
    try:
        import tomllib as toml_reader
    except ModuleNotFoundError:  # Python < 3.11
        try:
            import tomli as toml_reader
        except ModuleNotFoundError:
            return _loads_toml_subset(text)
    try:
        return toml_reader.loads(text)
    except toml_reader.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _loads_toml_subset(text: str) -> dict:
    root: dict = {}
    table = root
    decoder = json.JSONDecoder()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            names = line.split("#", 1)[0].strip()
            if not names.endswith("]"):
                raise ValueError(f"line {number}: bad table header")
            table = root
            for name in names[1:-1].split("."):
                table = table.setdefault(name.strip().strip('"'), {})
            continue
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not (_BARE_KEY.match(key) or (key.startswith('"') and key.endswith('"'))):
            raise ValueError(f"line {number}: expected key = value")
        value, end = _toml_scalar(rest.strip(), 0, decoder, number)
        trailing = rest.strip()[end:].strip()
        if trailing and not trailing.startswith("#"):
            raise ValueError(f"line {number}: unexpected text after the value")
        table[json.loads(key) if key.startswith('"') else key] = value
    return root


def _toml_scalar(text: str, pos: int, decoder, number: int):
    if text.startswith('"', pos):
        return decoder.raw_decode(text, pos)
    if text.startswith("[", pos):
        items, pos = [], pos + 1
        while True:
            while pos < len(text) and text[pos] in " ,":
                pos += 1
            if pos >= len(text):
                raise ValueError(f"line {number}: unterminated array")
            if text[pos] == "]":
                return items, pos + 1
            item, pos = _toml_scalar(text, pos, decoder, number)
            items.append(item)
    match = re.compile(r"[^,\]\s#]+").match(text, pos)
    if not match:
        raise ValueError(f"line {number}: missing value")
    token = match.group(0)
    words = {"true": True, "false": False, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
             "nan": math.nan, "+nan": math.nan, "-nan": math.nan}
    if token in words:
        return words[token], match.end()
    try:
        return (int(token.replace("_", "")) if re.fullmatch(r"[+-]?[0-9_]+", token)
                else float(token.replace("_", ""))), match.end()
    except ValueError:
        raise ValueError(f"line {number}: cannot read {token!r}") from None
