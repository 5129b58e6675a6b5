"""Read PNCP records from files, streaming: memory stays flat whatever the file size.

Formats, detected by content (the extension is only a tie-breaker):
- JSON Lines: one record (or one response page) per line; a bad line becomes a Rejection with its number.
- JSON: a response page `{"data": [...], "totalRegistros": ...}`, several pages concatenated, or an array of
  records. Elements are cut out of the byte stream one at a time, so a huge `data` array is never held whole.
- CSV: the flattened layout of PNCP exports, `data.`-prefixed dotted columns (`data.orgaoEntidade.cnpj`), page
  envelope columns (totalRegistros, endpoint, ...) dropped, nested objects rebuilt. Quoted cells stay strings
  (CNPJs keep their leading zeros); unquoted cells become numbers, booleans or null.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from cidadao.domain.records import Rejection

FileFormat = Literal["jsonl", "json", "csv"]

CHUNK_SIZE = 1 << 20
MAX_RECORD_LINES = 10_000  # a CSV record spanning more lines is an unclosed quote, not data
# Columns of the response envelope repeated on every row of a flattened export.
ENVELOPE_COLUMNS = frozenset(
    {"totalRegistros", "totalPaginas", "numeroPagina", "paginasRestantes", "empty", "endpoint"}
)
_BOM = b"\xef\xbb\xbf"


# A record (or the Rejection standing for it) and its JSON text as in the file when the reader has it.
SourcedRecord = tuple[dict[str, Any] | Rejection, bytes | None]


def read_records(
    path: str | Path, file_format: FileFormat | None = None
) -> Iterator[dict[str, Any] | Rejection]:
    """Records of a file, one at a time; unreadable pieces come out as Rejections, never as exceptions."""
    for item, _text in read_sourced_records(path, file_format):
        yield item


def read_sourced_records(
    path: str | Path, file_format: FileFormat | None = None, share: tuple[int, int] | None = None
) -> Iterator[SourcedRecord]:
    """`read_records` with each record's JSON text when a JSON Lines line holds exactly that record (else
    None): ingestion stores that text as the raw JSON instead of serialising the parsed record again.

    `share` (index, count): of a JSON Lines file, only the lines `line_share` gives to reader `index` of
    `count` (the others are not parsed); other formats are read whole.
    """
    path = Path(path)
    with path.open("rb") as stream:
        detected = file_format or detect_format(stream, path.suffix.lower())
        stream.seek(0)
        if detected == "jsonl":
            yield from _read_json_lines(stream, share)
            return
        for item in _read_csv(stream) if detected == "csv" else _read_json(stream):
            yield item, None


def detect_format(stream: IO[bytes], suffix: str = "") -> FileFormat:
    head = stream.read(CHUNK_SIZE)
    text = head.removeprefix(_BOM).lstrip()
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        first_line, newline, rest = text.partition(b"\n")
        if not newline and len(head) == CHUNK_SIZE:
            return "json"  # a line longer than a chunk: one big page, scanned rather than loaded whole
        # JSON Lines when a line holds a whole object; the second line decides when the first is broken.
        second_line = rest.lstrip().partition(b"\n")[0]
        if _is_object(first_line) or (second_line.startswith(b"{") and _is_object(second_line)):
            return "jsonl"
        # A pretty-printed page or array.
        return "jsonl" if suffix in (".jsonl", ".ndjson") else "json"
    return "csv"


def _is_object(line: bytes) -> bool:
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False


def _page_or_record(value: Any) -> list[Any]:
    if isinstance(value, dict) and isinstance(value.get("data"), list) and "numeroControlePNCP" not in value:
        return list(value["data"])
    return [value]


def _as_record(value: Any, where: str) -> dict[str, Any] | Rejection:
    if isinstance(value, dict):
        return value
    return Rejection(f"{where}: not a JSON object but {type(value).__name__}", value)


_CONTROL_KEY = b'"numeroControlePNCP"'


def line_share(line: bytes, number: int, count: int) -> int:
    """Which of `count` readers takes a JSON Lines line: by its first control number, so that every version
    of a record goes to the same reader, in file order (by line number when the line has none)."""
    key = line.find(_CONTROL_KEY)
    if key < 0:
        return number % count
    start = line.find(b'"', key + len(_CONTROL_KEY)) + 1
    end = line.find(b'"', start)
    return zlib.crc32(line[start:end]) % count


def _read_json_lines(stream: IO[bytes], share: tuple[int, int] | None = None) -> Iterator[SourcedRecord]:
    for number, line in enumerate(stream, start=1):
        if number == 1:
            line = line.removeprefix(_BOM)
        if not line.strip():
            continue
        if share is not None and line_share(line, number, share[1]) != share[0]:
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            yield Rejection(f"line {number}: invalid JSON ({error})", text), None
            continue
        items = _page_or_record(value)
        if len(items) == 1 and items[0] is value and isinstance(value, dict):
            yield value, line.strip()
            continue
        for item in items:
            yield _as_record(item, f"line {number}"), None


class MalformedJSONError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


# Structural bytes of JSON. Outside records we need separators too; inside a record only nesting and strings.
_OUTER_TOKEN = re.compile(rb'["{}\[\],:]')
_INNER_TOKEN = re.compile(rb'["{}\[\]]')
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN_OBJECT, _OPEN_ARRAY, _QUOTE = ord("{"), ord("["), ord('"')
_CLOSERS = {ord("}"): _OPEN_OBJECT, ord("]"): _OPEN_ARRAY}
_RECORD_END = re.compile(rb"}\s*(?:,\s*\{|\])")


class _JSONScanner:
    """Cuts record-sized JSON values out of a byte stream, with the line each starts on.

    Records are the elements of a top-level array, the elements of the `data` array of a top-level object,
    or a top-level object without a `data` array (a lone record). Only the value in progress is buffered.
    Raises MalformedJSONError when the structure itself is broken (nothing after that point can be trusted).
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buf = stream.read(CHUNK_SIZE).removeprefix(_BOM)
        self.eof = not self.buf
        self.pos = 0
        self.line = 1  # line number at offset `counted`
        self.counted = 0
        self.stack = bytearray()  # open containers
        self.record_level = -1  # stack depth whose direct children are records
        self.record_start = -1  # buffer offset of the record in progress
        self.record_line = 0
        self.top_start = -1  # offset of a top-level object that may turn out to be a lone record
        self.top_line = 0
        self.separator = -1  # offset of the last `[` or `,` at record level, to catch scalar elements
        self.saw_element = False
        self.last_string = b""
        self.key = b""

    def line_at(self, offset: int) -> int:
        if offset > self.counted:
            self.line += self.buf.count(b"\n", self.counted, offset)
            self.counted = offset
        return self.line

    def _refill(self) -> bool:
        if self.eof:
            return False
        keep = min(x for x in (self.record_start, self.top_start, self.separator, self.pos) if x >= 0)
        self.line_at(keep)
        chunk = self.stream.read(CHUNK_SIZE)
        self.eof = not chunk
        self.buf = self.buf[keep:] + chunk
        self.pos -= keep
        self.counted -= keep
        for name in ("record_start", "top_start", "separator"):
            if getattr(self, name) >= 0:
                setattr(self, name, getattr(self, name) - keep)
        return True

    def _scalar(self, at: int) -> tuple[int, bytes] | None:
        """A number or literal where a record belongs (between separators, no object seen)."""
        gap = self.buf[self.separator + 1 : at]
        value = gap.lstrip()
        if value and not self.saw_element:
            return self.line_at(at - len(value)), value.rstrip()
        return None

    def _record_end(self) -> tuple[int, Any] | None:
        """Fast path: where the object at `record_start` ends, and its value, letting orjson confirm.

        A candidate end is a `}` followed by `,{` or `]`, as between records. A JSON object is never a proper
        prefix of another, so the first candidate that parses is the record's end. After a few misses (records
        holding arrays of objects, or broken ones) the caller falls back to scanning token by token.
        """
        position, misses = self.record_start, 0
        while misses < 8:
            match = _RECORD_END.search(self.buf, position)
            if match is None:
                offset = position - self.record_start
                if not self._refill():
                    return None
                position = self.record_start + offset
                continue
            end = match.start() + 1
            try:
                return end, orjson.loads(self.buf[self.record_start : end])
            except orjson.JSONDecodeError:
                position, misses = end, misses + 1
        return None

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        """(line, value): the parsed value when the fast path found it, else the bytes to parse."""
        stack = self.stack
        while True:
            inside = self.record_start >= 0
            match = (_INNER_TOKEN if inside else _OUTER_TOKEN).search(self.buf, self.pos)
            string_end = None
            if match is not None and self.buf[match.start()] == _QUOTE:
                string_end = _STRING_REST.match(self.buf, match.end())
                if string_end is None:
                    match = None
            if match is None:
                if self._refill():
                    continue
                if stack:
                    raise MalformedJSONError(
                        self.line_at(len(self.buf)), "unexpected end of file inside JSON"
                    )
                return
            at = match.start()
            token = self.buf[at]
            depth = len(stack)
            if string_end is not None:
                self.pos = string_end.end()
                if depth == self.record_level and not inside:
                    self.saw_element = True
                    yield self.line_at(at), self.buf[at : self.pos]  # a bare string where a record belongs
                elif depth == 1 and stack[0] == _OPEN_OBJECT:
                    self.last_string = self.buf[at + 1 : self.pos - 1]
                continue
            self.pos = at + 1
            if token in (_OPEN_OBJECT, _OPEN_ARRAY):
                if depth == self.record_level and not inside:
                    self.saw_element = True
                    self.record_start, self.record_line = at, self.line_at(at)
                    found = self._record_end() if token == _OPEN_OBJECT else None
                    if found is not None:
                        self.pos, self.record_start = found[0], -1
                        yield self.record_line, found[1]
                        continue
                    self.pos = self.record_start + 1
                elif depth == 0 and token == _OPEN_ARRAY:
                    self.record_level, self.separator, self.saw_element = 1, at, False
                elif depth == 0:
                    self.top_start, self.top_line, self.key = at, self.line_at(at), b""
                elif depth == 1 and token == _OPEN_ARRAY and stack[0] == _OPEN_OBJECT and self.key == b"data":
                    self.record_level, self.separator, self.saw_element = 2, at, False
                    self.top_start = -1  # a response page: its records stream out one by one
                stack.append(token)
                continue
            if token in _CLOSERS:
                if not stack or stack[-1] != _CLOSERS[token]:
                    raise MalformedJSONError(self.line_at(at), f"unexpected {chr(token)!r}")
                if depth == self.record_level:
                    scalar = self._scalar(at)
                    if scalar is not None:
                        yield scalar
                    self.record_level = self.separator = -1
                stack.pop()
                depth -= 1
                if inside and depth == self.record_level:
                    yield self.record_line, self.buf[self.record_start : self.pos]
                    self.record_start = -1
                elif depth == 0 and self.top_start >= 0:
                    yield self.top_line, self.buf[self.top_start : self.pos]
                    self.top_start = -1
            elif token == ord(","):
                if depth == self.record_level:
                    scalar = self._scalar(at)
                    if scalar is not None:
                        yield scalar
                    self.separator, self.saw_element = at, False
                elif depth == 1:
                    self.key = b""
            elif depth == 1:  # ":" after a key of the top-level object
                self.key = self.last_string


def _read_json(stream: IO[bytes]) -> Iterator[dict[str, Any] | Rejection]:
    scanner = _JSONScanner(stream)
    try:
        for line, value in scanner:
            parsed = value
            if isinstance(value, bytes):
                try:
                    parsed = orjson.loads(value)
                except orjson.JSONDecodeError as error:
                    yield Rejection(f"line {line}: invalid JSON ({error})", value.decode("utf-8", "replace"))
                    continue
            for item in _page_or_record(parsed):
                yield _as_record(item, f"line {line}")
    except MalformedJSONError as error:
        yield Rejection(f"{error}; the rest of the file was not read", None)


_CSV_CELL = re.compile(r'"((?:[^"]|"")*)"(?=,|$)|([^,]*)', re.DOTALL)
_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_LITERALS: dict[str, Any] = {
    "": None,
    "NA": None,
    "null": None,
    "TRUE": True,
    "true": True,
    "FALSE": False,
    "false": False,
}


def _csv_cells(line: str) -> list[Any]:
    """Split one CSV record; quoted cells stay text, unquoted ones become numbers, booleans or None."""
    cells: list[Any] = []
    pos, size = 0, len(line)
    while True:
        match = _CSV_CELL.match(line, pos)
        assert match is not None  # the second alternative matches the empty string
        quoted, bare = match.groups()
        cells.append(quoted.replace('""', '"') if quoted is not None else _typed(bare))
        pos = match.end()
        if pos >= size:
            return cells
        pos += 1  # the comma


def _typed(text: str) -> Any:
    if text in _LITERALS:
        return _LITERALS[text]
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def _decode(line: bytes) -> str:
    # Spreadsheet exports of Brazilian data are often Windows-1252 rather than UTF-8.
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return line.decode("cp1252", errors="replace")


def _csv_rows(stream: IO[bytes]) -> Iterator[tuple[int, str] | Rejection]:
    """Logical CSV records (quoted cells may hold line breaks) with their first line number.

    A quote left open would swallow the rest of the file into one record: after MAX_RECORD_LINES lines the
    record is given up as a Rejection and reading resumes on the next line.
    """
    pending: list[str] = []
    quotes = 0
    start = 0
    for number, raw_line in enumerate(stream, start=1):
        line = _decode(raw_line.removeprefix(_BOM) if number == 1 else raw_line)
        if not pending:
            start = number
        pending.append(line)
        quotes += line.count('"')
        if quotes % 2 == 0:
            yield start, "".join(pending).rstrip("\r\n")
            pending.clear()
            quotes = 0
        elif len(pending) >= MAX_RECORD_LINES:
            reason = f"lines {start}-{number}: a quoted CSV cell is never closed; these lines were skipped"
            yield Rejection(reason, pending[0][:2000])
            pending.clear()
            quotes = 0
    if pending:
        yield start, "".join(pending).rstrip("\r\n")


def _columns(header: list[Any]) -> list[tuple[str, ...] | None]:
    """Dotted paths of the record fields; None for envelope columns to drop."""
    names = [str(name) for name in header]
    prefixed = any(name.startswith("data.") for name in names)
    columns: list[tuple[str, ...] | None] = []
    for name in names:
        if prefixed:
            columns.append(tuple(name[5:].split(".")) if name.startswith("data.") else None)
        else:
            columns.append(None if name in ENVELOPE_COLUMNS else tuple(name.split(".")))
    return columns


def _unflatten(columns: list[tuple[str, ...] | None], cells: list[Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    nested: list[dict[str, Any]] = []
    for path, value in zip(columns, cells, strict=True):
        if path is None:
            continue
        node = record
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
                nested.append(node)
            node = child
        last = path[-1]
        # `data.unidadeSubRogada` (empty) sits next to `data.unidadeSubRogada.ufNome`: the object wins.
        if not (value is None and isinstance(node.get(last), dict)):
            node[last] = value
    # An object whose every field is empty was null in the API response.
    for parent in reversed(nested):
        for name, child in parent.items():
            if isinstance(child, dict) and all(item is None for item in child.values()):
                parent[name] = None
    return record


def _read_csv(stream: IO[bytes]) -> Iterator[dict[str, Any] | Rejection]:
    rows = _csv_rows(stream)
    first = next(rows, None)
    if first is None:
        return
    if isinstance(first, Rejection):
        yield Rejection(f"CSV header unreadable: {first.reason}", first.raw)
        return
    columns = _columns(_csv_cells(first[1]))
    for row in rows:
        if isinstance(row, Rejection):
            yield row
            continue
        line, text = row
        if not text:
            continue
        cells = _csv_cells(text)
        if len(cells) != len(columns):
            yield Rejection(f"line {line}: {len(cells)} CSV cells where the header has {len(columns)}", text)
            continue
        yield _unflatten(columns, cells)
