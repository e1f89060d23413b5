"""Line numbers for TOML values: tomllib gives none, so a small scanner of the file's text maps
each tree path (``supervisor.children[2].restart``) to the line it is on. Used by config_file.py
to name the line of a mistake; when unsure it gives no line rather than a wrong one."""

from __future__ import annotations

import bisect
import json
import re

__all__ = ["locate_lines"]


def locate_lines(text: str) -> dict[str, int]:
    """Best effort: the line of each path (``supervisor.children[1].restart``) in TOML text.

    Handles tables, arrays of tables (nested too), dotted keys, and arrays and inline tables in
    values. The text must be valid TOML (parse it with tomllib first); on anything unexpected the
    map is empty, so that no message points at a wrong line.
    """
    try:
        return _Scanner(text).run()
    except Exception:  # noqa: BLE001 - a scanner surprise must never hide the real error
        return {}


class _ScanError(Exception):
    pass


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self.lines: dict[str, int] = {}
        self.arrays: dict[str, int] = {}  # array-of-tables path -> elements so far

    @property
    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.i) + 1

    def peek(self, n: int = 1) -> str:
        return self.s[self.i:self.i + n]

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise _ScanError(f"expected {char!r} at {self.i}")
        self.i += 1

    def skip(self, newlines: bool) -> None:
        s, n = self.s, len(self.s)
        while self.i < n:
            c = s[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif c == "#":
                end = s.find("\n", self.i)
                self.i = n if end < 0 else end
            else:
                return

    def run(self) -> dict[str, int]:
        current = ""
        while True:
            self.skip(newlines=True)
            if self.i >= len(self.s):
                return self.lines
            if self.peek() == "[":
                current = self.header()
            else:
                self.keyval(current)
            self.skip(newlines=False)
            if self.i < len(self.s) and self.peek() not in "\r\n":
                raise _ScanError(f"junk after a value at {self.i}")

    def header(self) -> str:
        line = self.line
        double = self.peek(2) == "[["
        self.i += 2 if double else 1
        keys = self.key()
        self.expect("]")
        if double:
            self.expect("]")
        path = ""
        for n, key in enumerate(keys):
            path = _join(path, key)
            if double and n == len(keys) - 1:
                self.lines.setdefault(path, line)
                index = self.arrays.get(path, 0)
                self.arrays[path] = index + 1
                path = f"{path}[{index}]"
            elif path in self.arrays:
                path = f"{path}[{self.arrays[path] - 1}]"
            self.lines.setdefault(path, line)
        return path

    def key(self) -> list[str]:
        parts = []
        while True:
            self.skip(newlines=False)
            c = self.peek()
            if c == '"':
                start = self.i
                self.string()
                raw = self.s[start:self.i]
                try:
                    parts.append(json.loads(raw))
                except ValueError:
                    parts.append(raw[1:-1])
            elif c == "'":
                start = self.i
                self.string()
                parts.append(self.s[start + 1:self.i - 1])
            else:
                found = _BARE_KEY.match(self.s, self.i)
                if not found:
                    raise _ScanError(f"expected a key at {self.i}")
                parts.append(found.group())
                self.i = found.end()
            self.skip(newlines=False)
            if self.peek() != ".":
                return parts
            self.i += 1

    def keyval(self, base: str) -> None:
        line = self.line
        keys = self.key()
        self.expect("=")
        path = base
        for key in keys:
            path = _join(path, key)
            self.lines.setdefault(path, line)
        self.value(path)

    def value(self, path: str) -> None:
        self.skip(newlines=False)
        c = self.peek()
        if c in "\"'":
            self.string()
        elif c == "[":
            self.array(path)
        elif c == "{":
            self.table(path)
        else:
            start = self.i
            while self.i < len(self.s) and self.s[self.i] not in ",]}#\r\n":
                self.i += 1
            if not self.s[start:self.i].strip():
                raise _ScanError(f"expected a value at {start}")

    def array(self, path: str) -> None:
        self.expect("[")
        index = 0
        while True:
            self.skip(newlines=True)
            if self.peek() == "]":
                self.i += 1
                return
            item = f"{path}[{index}]"
            self.lines.setdefault(item, self.line)
            self.value(item)
            index += 1
            self.skip(newlines=True)
            if self.peek() == ",":
                self.i += 1
            elif self.peek() == "]":
                self.i += 1
                return
            else:
                raise _ScanError(f"expected ',' or ']' at {self.i}")

    def table(self, path: str) -> None:
        self.expect("{")
        while True:
            self.skip(newlines=True)
            if self.peek() == "}":
                self.i += 1
                return
            self.keyval(path)
            self.skip(newlines=True)
            if self.peek() == ",":
                self.i += 1
            elif self.peek() == "}":
                self.i += 1
                return
            else:
                raise _ScanError(f"expected ',' or '}}' at {self.i}")

    def string(self) -> None:
        s = self.s
        for quote in ('"""', "'''"):
            if s.startswith(quote, self.i):
                self.i += 3
                while True:
                    if quote == '"""' and s.startswith("\\", self.i):
                        self.i += 2
                    elif s.startswith(quote, self.i):
                        self.i += 3
                        extra = 0
                        while extra < 2 and s.startswith(quote[0], self.i):
                            self.i += 1
                            extra += 1
                        return
                    elif self.i >= len(s):
                        raise _ScanError("unterminated string")
                    else:
                        self.i += 1
        quote = s[self.i]
        self.i += 1
        while True:
            if self.i >= len(s) or s[self.i] == "\n":
                raise _ScanError("unterminated string")
            if quote == '"' and s[self.i] == "\\":
                self.i += 2
            elif s[self.i] == quote:
                self.i += 1
                return
            else:
                self.i += 1


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key
