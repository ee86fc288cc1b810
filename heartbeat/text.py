"""Text from heartbeats, made safe to show a person.

Anything can publish on the heartbeat prefix, so a description or host may hold
terminal escapes, newlines (a forged log line), bidi overrides or zero-width
characters (a subject that reads as another).  :func:`neutral` removes all of
them and bounds the length; :func:`clip` only bounds it (for JSON, which escapes
by itself).  Both are pure and cheap on the common, clean string.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"

# Limits for text a heartbeat declares, in code points: enough for any honest
# description or host name, small enough that a record always fits a NATS message.
MAX_DESCRIPTION = 256
MAX_HOST = 128
MAX_LOG_VALUE = 120

# ANSI/VT escape sequences first (so their parameters go with them), then single
# characters: C0/C1 controls and DEL, zero-width and joiner characters, bidi
# embeddings, overrides and isolates, the BOM and the interlinear annotation marks.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_]?)")
# The zero-width joiner stays only between two emoji, where it joins a sequence
# (👩‍💻); anywhere else it is as invisible as the rest.
_EMOJI = "\u2600-\u27bf\ufe0f\U0001f000-\U0001faff"
_HIDDEN = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200c\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
    f"|(?<![{_EMOJI}])\u200d|\u200d(?![{_EMOJI}])"
)
_BREAKS = re.compile("[\t\n\u2028\u2029]+")
_CLEAN = re.compile(r"[ -~]*")  # printable ASCII: nothing to neutralise


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` code points, ending in an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS if limit > 0 else ""


def neutral(text: str, limit: int | None = None) -> str:
    """``text`` with escapes and invisible characters removed and line breaks turned
    into single spaces, then cut to ``limit`` code points (None: no limit)."""
    if not _CLEAN.fullmatch(text):
        text = _HIDDEN.sub("", _BREAKS.sub(" ", _ESCAPE.sub("", text)))
    return text if limit is None else clip(text, limit)


def for_log(value: object, limit: int = MAX_LOG_VALUE) -> str:
    """A value from outside as one short, safe log token: neutralised and cut."""
    return neutral(value if isinstance(value, str) else repr(value), limit)
