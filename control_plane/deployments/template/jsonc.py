"""A lenient JSON reader for template text, with ARM's (Json.NET's) error messages.

az sends the template file verbatim (docs/iac-deployments.md §2.2): comments, trailing commas, raw
newlines inside strings, and an unquoted `template` key in the request body. ARM parses it with
Json.NET, so a malformed template is answered with Json.NET's sentence, JSON path, 1-based line and
position; this reader reproduces those. Objects come back as `JObject`, a dict that remembers where
it started so later validation messages can say "at line 'L' and column 'C'" as ARM does.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

from .errors import INVALID_TEMPLATE, TemplateError

MAX_DEPTH = 256
_WS = re.compile(r"[ \t\r\n\ufeff\u00a0]*")
_NUMBER = re.compile(r"-?(?:\d+)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_SKIPPABLE = frozenset(" \t\r\n\ufeff\u00a0/")
_STRING_CHUNK = {'"': re.compile(r'[^"\\]*'), "'": re.compile(r"[^'\\]*")}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


class JObject(dict):
    """A JSON object that remembers the line and column where it started (0 when unknown)."""

    __slots__ = ("column", "line")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.column = 0


class JsonParseError(TemplateError):
    """Malformed JSON; `line`/`position` are 1-based as Json.NET reports them."""

    def __init__(self, reason: str, path: str, line: int, position: int) -> None:
        self.reason = reason
        self.path = path
        self.line = line
        self.position = position
        super().__init__(INVALID_TEMPLATE, f"Deployment template parse failed: '{reason} Path '{path}', line {line}, "
                                           f"position {position}.'.")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.path: list[str | int] = []
        self.line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def where(self, pos: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.line_starts, pos)
        return line, pos - self.line_starts[line - 1] + 1

    def fail(self, reason: str, pos: int | None = None) -> JsonParseError:
        line, column = self.where(self.pos if pos is None else pos)
        return JsonParseError(reason, _format_path(self.path), line, column)

    def skip(self) -> None:
        text = self.text
        if self.pos < len(text) and text[self.pos] not in _SKIPPABLE:
            return
        while True:
            self.pos = _WS.match(text, self.pos).end()
            if text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    self.pos = len(text)
                    raise self.fail("Unexpected end while parsing comment.")
                self.pos = end + 2
            else:
                return

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def value(self, depth: int) -> Any:
        self.skip()
        ch = self.peek()
        if ch == "{":
            return self.obj(depth + 1)
        if ch == "[":
            return self.arr(depth + 1)
        if ch in "\"'":
            return self.string()
        if not ch:
            raise self.fail("Unexpected end when reading JSON.")
        match = _NUMBER.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            literal = match.group()
            return float(literal) if any(c in literal for c in ".eE") else int(literal)
        match = _IDENT.match(self.text, self.pos)
        if match and match.group() in ("true", "false", "null"):
            self.pos = match.end()
            return {"true": True, "false": False, "null": None}[match.group()]
        raise self.fail(f"Unexpected character encountered while parsing value: {ch}.", self.pos)

    def string(self) -> str:
        quote = self.text[self.pos]
        self.pos += 1
        parts: list[str] = []
        text = self.text
        chunk = _STRING_CHUNK[quote]
        while True:
            stop = chunk.match(text, self.pos).end()
            if stop >= len(text):
                self.pos = len(text)
                raise self.fail(f"Unterminated string. Expected delimiter: {quote}.")
            if text[stop] == "\\":
                next_escape = stop
                parts.append(text[self.pos:next_escape])
                code = text[next_escape + 1:next_escape + 2]
                if code == "u":
                    digits = text[next_escape + 2:next_escape + 6]
                    if not re.fullmatch(r"[0-9A-Fa-f]{4}", digits):
                        self.pos = next_escape
                        raise self.fail(f"Invalid Unicode escape sequence: \\u{digits}.", next_escape)
                    parts.append(chr(int(digits, 16)))
                    self.pos = next_escape + 6
                elif code in _ESCAPES:
                    parts.append(_ESCAPES[code])
                    self.pos = next_escape + 2
                else:
                    raise self.fail(f"Bad JSON escape sequence: \\{code}.", next_escape + 1)
                continue
            parts.append(text[self.pos:stop])
            self.pos = stop + 1
            return "".join(parts)

    def key(self) -> str:
        ch = self.peek()
        if ch and ch in "\"'":
            return self.string()
        match = _IDENT.match(self.text, self.pos)
        if match:
            self.pos = match.end()
            return match.group()
        if not ch:
            raise self.fail("Unexpected end while parsing unquoted property name.")
        raise self.fail(f"Invalid property identifier character: {ch}.", self.pos)

    def obj(self, depth: int) -> JObject:
        if depth > MAX_DEPTH:
            raise self.fail(f"The reader's MaxDepth of {MAX_DEPTH} has been exceeded.")
        result = JObject()
        result.line, result.column = self.where(self.pos)
        self.pos += 1
        while True:
            self.skip()
            if self.peek() == "}":
                self.pos += 1
                return result
            key = self.key()
            self.path.append(key)
            self.skip()
            if self.peek() != ":":
                got = self.peek() or "end of input"
                raise self.fail(f"Invalid character after parsing property name. Expected ':' but got: {got}.",
                                self.pos)
            self.pos += 1
            value = self.value(depth)
            if key in result:
                raise self.fail(f"Can not add property {key} to Newtonsoft.Json.Linq.JObject. "
                                "Property with the same name already exists on object.")
            result[key] = value
            self.skip()
            ch = self.peek()
            if not ch:
                raise self.fail("Unexpected end when reading JSON.")
            if ch not in ",}":
                raise self.fail(f"After parsing a value an unexpected character was encountered: {ch}.", self.pos)
            self.path.pop()
            self.pos += 1
            if ch == "}":
                return result

    def arr(self, depth: int) -> list[Any]:
        if depth > MAX_DEPTH:
            raise self.fail(f"The reader's MaxDepth of {MAX_DEPTH} has been exceeded.")
        result: list[Any] = []
        self.pos += 1
        while True:
            self.skip()
            if self.peek() == "]":
                self.pos += 1
                return result
            self.path.append(len(result))
            if self.peek() == ",":
                raise self.fail("Unexpected character encountered while parsing value: ,.", self.pos)
            result.append(self.value(depth))
            self.skip()
            ch = self.peek()
            if not ch:
                raise self.fail("Unexpected end when reading JSON.")
            if ch not in ",]":
                raise self.fail(f"After parsing a value an unexpected character was encountered: {ch}.", self.pos)
            self.path.pop()
            self.pos += 1
            if ch == "]":
                return result


def _format_path(path: list[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_$]+", part):
            out += f".{part}" if out else part
        else:
            out += "['" + part.replace("'", "\\'") + "']"
    return out


def loads(text: str) -> Any:
    """Parse lenient JSON text; raises JsonParseError (code InvalidTemplate) with Json.NET's message."""
    reader = _Reader(text)
    value = reader.value(0)
    reader.skip()
    if reader.pos < len(text):
        raise reader.fail(f"Additional text encountered after finished reading JSON content: {reader.peek()}.",
                          reader.pos)
    return value
