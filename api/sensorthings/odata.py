"""The OData subset SensorThings API v1.1 uses in query options (OGC 18-088 §9.3):
``$filter`` parsed into a small syntax tree, and ``$orderby``, ``$select``,
``$expand``, ``$top``, ``$skip`` and ``$count`` parsed into `QueryOptions`.

Pure functions, no database: the tree is compiled to SQL by
`api.sensorthings.compile`.  Every mistake is an `ODataError` naming the option and
what was wrong with it (with the character position for ``$filter``), which the
routes turn into a 400 problem.

The ``$filter`` grammar (OData 4.01 URL conventions §5.1.1, the part STA lists in
§9.3.3.5), loosest first::

    or      := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := add (('eq'|'ne'|'gt'|'ge'|'lt'|'le') add)?
    add     := mul (('add'|'sub') mul)*
    mul     := unary (('mul'|'div'|'mod') unary)*
    unary   := '-' unary | primary
    primary := '(' or ')' | literal | function '(' [or (',' or)*] ')' | path
    path    := name ('/' name)*
    literal := 'string' (quote doubled inside) | number | true | false | null
             | ISO 8601 date or date-time (2024-05-01, 2024-05-01T12:00:00Z)
             | geography'WKT' (OData's geography literal: POINT, LINESTRING, POLYGON)

``$top`` beyond `MAX_TOP` is not an error: the server pages (OData 4.01 Protocol
§11.2.6.7, server-driven paging), so the page holds `MAX_TOP` and a nextLink leads
on.  ``$skiptoken`` carries the server's own position in a nextLink (`api.
sensorthings.routes`), ``$resultFormat=dataArray`` asks for the Data Array encoding
(OGC 18-088 §14.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Literal as TypingLiteral

from api.sensorthings.geo import Geometry, GeometryError, parse_wkt

#: largest page: a bigger $top gets pages of this size (server-driven paging)
MAX_TOP = 10_000
DEFAULT_TOP = 100
#: largest $skip: far beyond any collection, and $skip + $top stays a PostgreSQL bigint
MAX_SKIP = 10**15
#: how deep $expand may nest (Datastreams($expand=Observations) is depth 2)
MAX_EXPAND_DEPTH = 3
#: longest option text accepted (a filter longer than this is not a real query)
MAX_OPTION_LENGTH = 4000
#: deepest nesting of a $filter (parentheses, not, minus, function arguments, chains of
#: arithmetic): real filters nest a few levels; a deeper one is refused before the
#: recursive parser and compiler run out of stack (150 parentheses did, as a 500)
MAX_FILTER_DEPTH = 32

COMPARISONS = frozenset({"eq", "ne", "gt", "ge", "lt", "le"})
ARITHMETIC = frozenset({"add", "sub", "mul", "div", "mod"})


class ODataError(ValueError):
    """A query option that cannot be understood; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


# ---------------------------------------------------------------------- syntax tree

LiteralKind = TypingLiteral["string", "number", "boolean", "null", "datetime", "geometry"]


@dataclass(frozen=True, slots=True)
class Literal:
    value: str | int | float | bool | datetime | Geometry | None
    kind: LiteralKind


@dataclass(frozen=True, slots=True)
class Path:
    """A property path: ``name``, ``properties/road``, ``Thing/name``,
    ``Datastream/ObservedProperty/name``."""

    segments: tuple[str, ...]

    def __str__(self) -> str:
        return "/".join(self.segments)


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Binary:
    """A comparison, ``and``/``or``, or arithmetic: ``op`` is the OData operator."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class Negate:
    operand: Node


Node = Literal | Path | Call | Binary | Not | Negate


def paths_in(node: Node) -> list[Path]:
    """Every property path in the tree, left to right."""
    match node:
        case Path():
            return [node]
        case Call(args=args):
            return [p for arg in args for p in paths_in(arg)]
        case Binary(left=left, right=right):
            return paths_in(left) + paths_in(right)
        case Not(operand=operand) | Negate(operand=operand):
            return paths_in(operand)
        case _:
            return []


# ---------------------------------------------------------------------- tokens

TokenKind = TypingLiteral["name", "string", "number", "datetime", "punct", "end"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    position: int  # 0-based character offset in the option's text
    value: str | int | float | datetime | None = None


_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|z|[+-]\d{2}:\d{2})?"
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![\w:])")
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[@A-Za-z_][A-Za-z0-9_.@]*")
_SPACE = re.compile(r"\s+")
_PUNCT = "()/,"


def _parse_datetime(text: str, option: str) -> datetime:
    """An ISO 8601 date-time; without an offset it is taken as UTC (the platform's
    clock), and nanoseconds are cut to the microseconds PostgreSQL keeps."""
    body = text
    fraction = re.search(r"\.(\d+)", body)
    if fraction and len(fraction.group(1)) > 6:
        body = body[: fraction.start(1) + 6] + body[fraction.end(1) :]
    try:
        moment = datetime.fromisoformat(body.replace("z", "Z"))
    except ValueError:
        raise ODataError(option, f"{text!r} is not a valid ISO 8601 date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_date(text: str, option: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ODataError(option, f"{text!r} is not a valid date") from None
    return datetime.combine(day, time(), UTC)


def tokenize(text: str, option: str = "$filter") -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if (space := _SPACE.match(text, i)) is not None:
            i = space.end()
            continue
        if char == "'":
            j, parts = i + 1, []
            while True:
                k = text.find("'", j)
                if k < 0:
                    raise ODataError(option, f"string starting at position {i} is not closed")
                parts.append(text[j:k])
                if text.startswith("''", k):  # a doubled quote is a quote (OData ABNF)
                    parts.append("'")
                    j = k + 2
                    continue
                break
            tokens.append(Token("string", text[i : k + 1], i, "".join(parts)))
            i = k + 1
        elif (found := _DATETIME.match(text, i)) is not None:
            tokens.append(
                Token("datetime", found.group(), i, _parse_datetime(found.group(), option))
            )
            i = found.end()
        elif (found := _DATE.match(text, i)) is not None:
            tokens.append(Token("datetime", found.group(), i, _parse_date(found.group(), option)))
            i = found.end()
        elif (found := _NUMBER.match(text, i)) is not None:
            number = found.group()
            is_int = number.isdigit()
            tokens.append(Token("number", number, i, int(number) if is_int else float(number)))
            i = found.end()
        elif (found := _NAME.match(text, i)) is not None:
            tokens.append(Token("name", found.group(), i))
            i = found.end()
        elif char in _PUNCT or char == "-":
            tokens.append(Token("punct", char, i))
            i += 1
        else:
            raise ODataError(option, f"unexpected character {char!r} at position {i}")
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------- $filter


#: functions and how many arguments each takes (min, max)
FUNCTIONS: dict[str, tuple[int, int]] = {
    "substringof": (2, 2),
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "length": (1, 1),
    "indexof": (2, 2),
    "substring": (2, 3),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "concat": (2, 2),
    "year": (1, 1),
    "month": (1, 1),
    "day": (1, 1),
    "hour": (1, 1),
    "minute": (1, 1),
    "second": (1, 1),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "now": (0, 0),
    # geospatial (OGC 18-088 Table 23; api.sensorthings.geo)
    "geo.distance": (2, 2),
    "geo.length": (1, 1),
    "geo.intersects": (2, 2),
    "st_equals": (2, 2),
    "st_disjoint": (2, 2),
    "st_touches": (2, 2),
    "st_within": (2, 2),
    "st_overlaps": (2, 2),
    "st_crosses": (2, 2),
    "st_intersects": (2, 2),
    "st_contains": (2, 2),
    "st_relate": (3, 3),
}


class _Parser:
    def __init__(self, text: str, option: str) -> None:
        self.text = text
        self.option = option
        self.tokens = tokenize(text, option)
        self.index = 0
        self.depth = 0

    def deeper(self) -> None:
        """Enter one level of nesting (leave it with `shallower`)."""
        self.depth += 1
        if self.depth > MAX_FILTER_DEPTH:
            raise self.error(f"the expression nests deeper than {MAX_FILTER_DEPTH} levels")

    def shallower(self) -> None:
        self.depth -= 1

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def error(self, message: str, token: Token | None = None) -> ODataError:
        where = token or self.token
        at = "at the end" if where.kind == "end" else f"at position {where.position}"
        return ODataError(self.option, f"{message} {at}")

    def advance(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def is_word(self, *words: str) -> bool:
        token = self.token
        return token.kind == "name" and token.text in words

    def expect_punct(self, char: str) -> None:
        if self.token.kind != "punct" or self.token.text != char:
            shown = repr(self.token.text) if self.token.kind != "end" else "nothing"
            raise self.error(f"expected {char!r} but found {shown}")
        self.advance()

    def at_end(self) -> bool:
        return self.token.kind == "end"

    def parse(self) -> Node:
        if self.at_end():
            raise ODataError(self.option, "the expression is empty")
        node = self.or_()
        if not self.at_end():
            raise self.error(f"unexpected {self.token.text!r}")
        if depth_of(node) > MAX_FILTER_DEPTH:
            raise ODataError(
                self.option, f"the expression nests deeper than {MAX_FILTER_DEPTH} levels"
            )
        return node

    def or_(self) -> Node:
        terms = [self.and_()]
        while self.is_word("or"):
            self.advance()
            terms.append(self.and_())
        return _balanced("or", terms)

    def and_(self) -> Node:
        terms = [self.not_()]
        while self.is_word("and"):
            self.advance()
            terms.append(self.not_())
        return _balanced("and", terms)

    def not_(self) -> Node:
        if self.is_word("not"):
            self.advance()
            self.deeper()
            operand = self.not_()
            self.shallower()
            return Not(operand)
        return self.compare()

    def compare(self) -> Node:
        node = self.add()
        if self.token.kind == "name" and self.token.text in COMPARISONS:
            op = self.advance().text
            node = Binary(op, node, self.add())
            if self.token.kind == "name" and self.token.text in COMPARISONS:
                raise self.error("comparisons do not chain; join them with 'and'")
        return node

    def add(self) -> Node:
        node = self.mul()
        while self.is_word("add", "sub"):
            op = self.advance().text
            node = Binary(op, node, self.mul())
        return node

    def mul(self) -> Node:
        node = self.unary()
        while self.is_word("mul", "div", "mod"):
            op = self.advance().text
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.token.kind == "punct" and self.token.text == "-":
            self.advance()
            self.deeper()
            operand = self.unary()
            self.shallower()
            if isinstance(operand, Literal) and operand.kind == "number":
                assert isinstance(operand.value, int | float)
                return Literal(-operand.value, "number")
            return Negate(operand)
        return self.primary()

    def primary(self) -> Node:
        token = self.token
        if token.kind == "punct" and token.text == "(":
            self.advance()
            self.deeper()
            node = self.or_()
            self.shallower()
            self.expect_punct(")")
            return node
        if token.kind == "string":
            self.advance()
            return Literal(token.value, "string")
        if token.kind == "number":
            self.advance()
            return Literal(token.value, "number")
        if token.kind == "datetime":
            self.advance()
            return Literal(token.value, "datetime")
        if token.kind == "name":
            return self.name()
        if token.kind == "end":
            raise self.error("expected a value")
        raise self.error(f"unexpected {token.text!r}")

    def name(self) -> Node:
        token = self.advance()
        word = token.text
        if word in ("true", "false"):
            return Literal(word == "true", "boolean")
        if word == "null":
            return Literal(None, "null")
        if word in COMPARISONS or word in ARITHMETIC or word in ("and", "or", "not"):
            raise self.error(f"expected a value but found the operator {word!r}", token)
        nxt = self.token
        if nxt.kind == "string" and word == "datetime":  # OData 2 style datetime'...'
            self.advance()
            assert isinstance(nxt.value, str)
            return Literal(_parse_datetime(nxt.value, self.option), "datetime")
        if nxt.kind == "string" and word.lower() in ("geography", "geometry"):
            self.advance()
            assert isinstance(nxt.value, str)
            try:
                return Literal(parse_wkt(nxt.value), "geometry")
            except GeometryError as error:
                raise self.error(f"{word}'…': {error}", nxt) from None
        if nxt.kind == "punct" and nxt.text == "(":
            return self.call(token)
        segments = [word]
        while self.token.kind == "punct" and self.token.text == "/":
            self.advance()
            part = self.token
            if part.kind != "name":
                raise self.error("expected a property name after '/'")
            segments.append(self.advance().text)
        return Path(tuple(segments))

    def call(self, token: Token) -> Node:
        name = token.text.lower()
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {token.text!r} (supported: {known})", token)
        self.expect_punct("(")
        self.deeper()
        args: list[Node] = []
        if not (self.token.kind == "punct" and self.token.text == ")"):
            args.append(self.or_())
            while self.token.kind == "punct" and self.token.text == ",":
                self.advance()
                args.append(self.or_())
        self.shallower()
        self.expect_punct(")")
        low, high = FUNCTIONS[name]
        if not low <= len(args) <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            raise self.error(f"{name}() takes {wanted} arguments, not {len(args)}", token)
        return Call(name, tuple(args))


def _balanced(op: str, terms: list[Node]) -> Node:
    """``a op b op c op d`` as a balanced tree: ``and`` and ``or`` are associative,
    and a long list of alternatives (``id eq 1 or id eq 2 or …``) then nests only
    log2(n) deep.  Three terms or fewer come out as the left-deep tree they read as."""
    if len(terms) == 1:
        return terms[0]
    middle = (len(terms) + 1) // 2
    return Binary(op, _balanced(op, terms[:middle]), _balanced(op, terms[middle:]))


def depth_of(node: Node) -> int:
    """How deep the tree nests (a leaf is 1), counted without recursion."""
    deepest = 0
    stack: list[tuple[Node, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        match current:
            case Binary(left=left, right=right):
                stack += [(left, depth + 1), (right, depth + 1)]
            case Not(operand=operand) | Negate(operand=operand):
                stack.append((operand, depth + 1))
            case Call(args=args):
                stack += [(arg, depth + 1) for arg in args]
    return deepest


def parse_filter(text: str, option: str = "$filter") -> Node:
    """The syntax tree of a ``$filter`` expression."""
    if len(text) > MAX_OPTION_LENGTH:
        raise ODataError(option, f"longer than {MAX_OPTION_LENGTH} characters")
    return _Parser(text, option).parse()


# ---------------------------------------------------------------------- the other options


@dataclass(frozen=True, slots=True)
class OrderBy:
    path: Path
    descending: bool


@dataclass(slots=True)
class QueryOptions:
    """The system query options of one request, or of one ``$expand`` item."""

    top: int | None = None  # None: the default page size
    skip: int = 0
    count: bool = False
    filter: Node | None = None
    orderby: tuple[OrderBy, ...] = ()
    select: tuple[str, ...] | None = None
    expand: tuple[ExpandItem, ...] = ()
    #: ``dataArray`` (OGC 18-088 §14.3), or None for the default JSON
    result_format: str | None = None
    #: the server's paging position from a nextLink (opaque to clients)
    skiptoken: str | None = None
    #: the options as the client wrote them (nextLinks of expanded collections)
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def page_size(self) -> int:
        return DEFAULT_TOP if self.top is None else self.top


@dataclass(slots=True)
class ExpandItem:
    """``$expand=Nav($select=…;$top=…)``, with ``Nav/Nav2`` turned into a nested
    expand of ``Nav2`` inside ``Nav``."""

    navigation: str
    options: QueryOptions


def split_top_level(text: str, separator: str, option: str) -> list[str]:
    """Split on ``separator`` outside parentheses and quoted strings."""
    parts: list[str] = []
    depth = 0
    quoted = False
    start = 0
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted  # a doubled quote toggles twice: still right
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ODataError(option, f"unbalanced ')' at position {i}")
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise ODataError(option, "a quoted string is not closed")
    if depth != 0:
        raise ODataError(option, "unbalanced '('")
    parts.append(text[start:])
    return parts


_DIGITS = re.compile(r"[0-9]+")  # str.isdigit also takes ² and other digits int() refuses


def _non_negative_int(text: str, option: str) -> int:
    if not _DIGITS.fullmatch(text.strip()):
        raise ODataError(option, f"must be a non-negative integer, not {text!r}")
    return int(text.strip())


def parse_top(text: str, option: str = "$top") -> int:
    """The page size asked for, at most `MAX_TOP`: more is served in pages."""
    return min(_non_negative_int(text, option), MAX_TOP)


def parse_skip(text: str, option: str = "$skip") -> int:
    skip = _non_negative_int(text, option)
    if skip > MAX_SKIP:
        raise ODataError(option, f"{skip} is more than the limit of {MAX_SKIP}")
    return skip


def parse_count(text: str, option: str = "$count") -> bool:
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise ODataError(option, f"must be true or false, not {text!r}")
    return value == "true"


_NAME_ONLY = re.compile(r"^[@A-Za-z_][A-Za-z0-9_.@]*$")


def parse_orderby(text: str, option: str = "$orderby") -> tuple[OrderBy, ...]:
    items: list[OrderBy] = []
    for part in split_top_level(text, ",", option):
        words = part.split()
        if not words or len(words) > 2:
            raise ODataError(option, f"{part.strip()!r} is not 'property [asc|desc]'")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise ODataError(option, f"direction {words[1]!r} is not asc or desc")
        segments = tuple(words[0].split("/"))
        if not all(_NAME_ONLY.match(s) for s in segments):
            raise ODataError(option, f"{words[0]!r} is not a property name")
        items.append(OrderBy(Path(segments), direction == "desc"))
    return tuple(items)


def parse_select(text: str, option: str = "$select") -> tuple[str, ...]:
    names: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not _NAME_ONLY.match(name):
            raise ODataError(option, f"{name!r} is not a property name")
        names.append(name)
    return tuple(dict.fromkeys(names))


_EXPAND_ITEM = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_/]*)\s*(?:\((.*)\))?\s*$", re.DOTALL)


def parse_expand(text: str, option: str = "$expand", depth: int = 1) -> tuple[ExpandItem, ...]:
    if depth > MAX_EXPAND_DEPTH:
        raise ODataError(option, f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
    items: list[ExpandItem] = []
    for part in split_top_level(text, ",", option):
        found = _EXPAND_ITEM.match(part)
        if found is None:
            raise ODataError(
                option, f"{part.strip()!r} is not 'Navigation' or 'Navigation(options)'"
            )
        navs = found.group(1).split("/")
        if not all(navs):
            raise ODataError(option, f"{found.group(1)!r} is not a navigation path")
        if len(navs) - 1 + depth > MAX_EXPAND_DEPTH:
            raise ODataError(option, f"$expand nests deeper than {MAX_EXPAND_DEPTH} levels")
        inner: dict[str, str] = {}
        if found.group(2) is not None and found.group(2).strip():
            for pair in split_top_level(found.group(2), ";", option):
                name, sep, value = pair.partition("=")
                if not sep:
                    raise ODataError(
                        option, f"{pair.strip()!r} in {navs[0]}(…) is not $option=value"
                    )
                inner[name.strip()] = value
        # Nav1/Nav2(opts) is Nav1($expand=Nav2(opts))
        options = parse_options(inner, depth=depth + len(navs) - 1, prefix=f"$expand {navs[-1]}: ")
        for navigation in reversed(navs[1:]):
            options = QueryOptions(expand=(ExpandItem(navigation, options),))
        items.append(ExpandItem(navs[0], options))
    return _merge_expands(items)


def _merge_expands(items: list[ExpandItem]) -> tuple[ExpandItem, ...]:
    """``Datastreams/Thing,Datastreams/Sensor`` expands Datastreams once, with both."""
    merged: dict[str, ExpandItem] = {}
    for item in items:
        seen = merged.get(item.navigation)
        if seen is None:
            merged[item.navigation] = item
        else:
            seen.options.expand = _merge_expands([*seen.options.expand, *item.options.expand])
    return tuple(merged.values())


KNOWN_OPTIONS = frozenset(
    {
        "$top",
        "$skip",
        "$count",
        "$filter",
        "$orderby",
        "$select",
        "$expand",
        "$resultFormat",
        "$skiptoken",
    }
)
#: options that apply to the whole response, not to an expanded collection
_TOP_LEVEL_ONLY = frozenset({"$resultFormat", "$skiptoken"})
RESULT_FORMATS = ("dataArray",)


def parse_options(values: dict[str, str], *, depth: int = 1, prefix: str = "") -> QueryOptions:
    """`QueryOptions` from the system query options (``$name`` → text); an option STA
    defines that this service does not support, or one it does not know, is an error."""
    options = QueryOptions(raw=dict(values))
    for name, text in values.items():
        option = prefix + name
        if name not in KNOWN_OPTIONS:
            raise ODataError(
                option, f"unknown query option (supported: {', '.join(sorted(KNOWN_OPTIONS))})"
            )
        if name in _TOP_LEVEL_ONLY and prefix:
            raise ODataError(option, "applies to the whole request, not inside $expand")
        if len(text) > MAX_OPTION_LENGTH:
            raise ODataError(option, f"longer than {MAX_OPTION_LENGTH} characters")
        if name == "$top":
            options.top = parse_top(text, option)
        elif name == "$skip":
            options.skip = parse_skip(text, option)
        elif name == "$count":
            options.count = parse_count(text, option)
        elif name == "$filter":
            options.filter = parse_filter(text, option)
        elif name == "$orderby":
            options.orderby = parse_orderby(text, option)
        elif name == "$select":
            options.select = parse_select(text, option)
        elif name == "$resultFormat":
            if text not in RESULT_FORMATS:
                raise ODataError(option, f"{text!r} is not a result format (supported: dataArray)")
            options.result_format = text
        elif name == "$skiptoken":
            options.skiptoken = text
        else:
            options.expand = parse_expand(text, option, depth)
    return options
