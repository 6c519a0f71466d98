"""What strangers send, read safely: the one JSON reader for request bodies, and text rules.

`json.loads` on its own is not safe for input anyone can send: 2,000 nested brackets raise
RecursionError, an integer of 4,301 digits raises ValueError, `"\\ud800"` decodes to a string
that cannot be encoded back to UTF-8 (nor stored in PostgreSQL, nor hashed), and duplicate keys
silently keep the last value. `loads_object` refuses each of these with `PayloadInvalid` (a 400
with a message a person can act on) before anything else looks at the data.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from bridge.errors import PayloadInvalid

# Far more than any webhook or page request needs, far less than the parser's recursion limit.
MAX_DEPTH = 32
# Ticket ids, counts and timestamps fit easily; a 4,301-digit number is never a real value.
MAX_NUMBER_CHARS = 40

# The characters that matter for depth, and the rest of a string literal after its opening
# quote (escapes included). Possessive quantifiers: no backtracking, so each character of the body
# is looked at a bounded number of times, whatever it holds.
_STRUCTURAL = re.compile(r'["\[\]{}]')
_STRING_REST = re.compile(r'(?:[^"\\]++|\\.)*+"', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Refused(Exception):
    """Raised from inside the decoder's hooks; becomes PayloadInvalid."""


def _check_depth(text: str) -> None:
    """Refuse deep nesting before the (recursive) parser sees it; linear in the body's length."""
    depth = 0
    position = 0
    while match := _STRUCTURAL.search(text, position):
        position = match.end()
        char = match.group()
        if char == '"':
            rest = _STRING_REST.match(text, position)
            if rest is None:
                return  # an unterminated string: the parser stops there with a clear error
            position = rest.end()
        elif char in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise PayloadInvalid(
                    f"The body nests objects or arrays more than {MAX_DEPTH} levels deep."
                )
        else:
            depth -= 1


def _number(kind: type[int] | type[float]) -> Any:
    def parse(literal: str) -> int | float:
        if len(literal) > MAX_NUMBER_CHARS:
            raise _Refused(f"A number in the body is longer than {MAX_NUMBER_CHARS} characters.")
        value = kind(literal)
        if value in (float("inf"), float("-inf")):
            raise _Refused("A number in the body is too large.")
        return value

    return parse


def _constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON value.")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(f"The key {key[:40]!r} appears twice in one object.")
        result[key] = value
    return result


def _check_strings(node: Any) -> None:
    """A lone surrogate ("\\ud800") is valid JSON but not text: nothing could store or hash it."""
    if isinstance(node, str):
        if _SURROGATE.search(node):
            raise PayloadInvalid(
                "The body holds a string with an unpaired surrogate escape (such as \\ud800); "
                "send UTF-8 text."
            )
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_strings(key)
            _check_strings(value)
    elif isinstance(node, list):
        for value in node:
            _check_strings(value)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_int=_number(int),
    parse_float=_number(float),
    parse_constant=_constant,
)


def loads_object(body: bytes) -> dict[str, Any]:
    """The JSON object in `body`.

    Raises:
        PayloadInvalid: not UTF-8, not JSON, too deep, an oversized number, a duplicate key, an
            unpaired surrogate, or a top level that is not an object.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadInvalid(
            f"The body is not valid JSON: it is not UTF-8 text (byte {err.start})."
        ) from None
    _check_depth(text)
    try:
        data = _DECODER.decode(text)
    except json.JSONDecodeError as err:
        raise PayloadInvalid(
            f"The body is not valid JSON (line {err.lineno}, column {err.colno})."
        ) from None
    except _Refused as err:
        raise PayloadInvalid(str(err)) from None
    except (RecursionError, ValueError):  # a limit above not holding must still be a 400
        raise PayloadInvalid("The body is not JSON that sealroom can read.") from None
    if not isinstance(data, dict):
        raise PayloadInvalid("The body must be a JSON object.")
    _check_strings(data)
    return data


# -- text fields ----------------------------------------------------------------------------------

# Kept in free text (a subject); every other control character is refused everywhere.
_TEXT_WHITESPACE = frozenset("\t\n\r")
# Refused in identifiers on top of control characters: bidi overrides and zero-width characters
# (Cf) make one id look like another, and line or paragraph separators (Zl, Zp) split log lines.
_IDENTIFIER_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_TEXT_CATEGORIES = frozenset({"Cc", "Cs"})


def text_problem(value: str, *, identifier: bool) -> str | None:
    """What makes `value` unacceptable as an identifier (strict) or free text, if anything.

    Free text keeps tabs and line breaks, and format characters (an emoji's zero-width joiner,
    right-to-left marks); an identifier keeps neither. NUL is refused in both: PostgreSQL cannot
    store it.
    """
    refused = _IDENTIFIER_CATEGORIES if identifier else _TEXT_CATEGORIES
    for char in value:
        if not identifier and char in _TEXT_WHITESPACE:
            continue
        if unicodedata.category(char) in refused:
            kind = "a control character" if char < "\x80" else "an invisible or control character"
            return f"contains {kind} (U+{ord(char):04X}); send plain text"
    return None
