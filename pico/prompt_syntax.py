"""AUTOMATIC1111's prompt syntax, read the way the webui reads it (no torch here).

What A1111 does to a prompt before any text encoder sees it, in its order:

1. ``# comment`` to the end of a line is removed.
2. Extra networks ``<lora:NAME:WEIGHT>`` (and ``<hypernet:...>``, ...) are cut out of the text.
3. ``AND`` splits the prompt into sub-prompts (composable diffusion), each with an optional
   trailing ``:WEIGHT`` that scales its guidance.
4. Prompt editing ``[from:to:when]``, ``[to:when]``, ``[from::when]`` and alternation ``[a|b]``
   turn the prompt into a schedule: which text conditions which sampling steps.
5. Each scheduled text is split into weighted runs: ``(word)`` x1.1, ``[word]`` /1.1,
   ``(word:1.3)``, escapes ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\``, and ``BREAK`` between chunks.

The results match A1111's ``modules/prompt_parser.py`` (its doctests are among the tests),
written anew here: the schedule grammar is parsed by recursive descent instead of Earley.
Negative prompts go through 1, 4 and 5 only, as in A1111.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

from pico.errors import InvalidRequest

BREAK_MARK = ("BREAK", -1.0)
"""The run :func:`parse_attention` emits where ``BREAK`` starts a new 75-token chunk."""

TOKENS_PER_CHUNK = 75  # prompt tokens per chunk; with BOS and EOS the text encoder reads 77
MAX_NESTING = 100  # deeper bracket nesting is read as plain text rather than risking the stack
MAX_OPEN_BRACKETS = 200  # weighting costs (open brackets x text runs): a bound on what one prompt can cost


class PromptSyntaxError(InvalidRequest, ValueError):
    """A prompt that A1111's syntax cannot give a meaning to (a weight that is not a number): a 422."""


class LoraTag(NamedTuple):
    """One ``<lora:NAME:WEIGHT[:UNET_WEIGHT]>`` tag: the text-encoder weight, and the UNet's (A1111's two multipliers)."""

    name: str
    weight: float
    unet_weight: float


@dataclass
class PromptPlan:
    """What a prompt asks for once A1111's syntax is read: the schedule of texts, LoRAs, and what cannot be honoured."""

    schedule: list[tuple[int, str]]  # (last step it conditions, 0-based, inclusive; text), as A1111's schedules
    loras: list[LoraTag] = field(default_factory=list)
    guidance_factor: float = 1.0  # A1111's trailing ":W" on a lone sub-prompt multiplies the guidance scale
    warnings: list[str] = field(default_factory=list)

    @property
    def texts(self) -> list[str]:
        """The schedule's texts, in order."""
        return [text for _, text in self.schedule]


# --- comments and extra networks ------------------------------------------------------------

_WHOLE_LINE_COMMENT = re.compile(r"(^|\n)#[^\n]*(\n|$)")
_TRAILING_COMMENT = re.compile(r"#[^\n]*(\n|$)")
_EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LORA_KINDS = ("lora", "lyco")  # A1111's Lora extension answers to both names


def strip_comments(text: str) -> str:
    """Remove ``#`` comments to the end of each line, as A1111 1.8+ does (its default)."""
    text = _WHOLE_LINE_COMMENT.sub("\n", text)
    return _TRAILING_COMMENT.sub("\n", text)


def _multiplier(value: str, tag: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise PromptSyntaxError(f"The weight {value!r} in {tag} is not a number; write it like <lora:name:0.8>.") from None


def extract_extra_networks(text: str) -> tuple[str, list[LoraTag], list[str]]:
    """(prompt without any ``<kind:...>`` tag, the LoRA tags, the other tags as written) — A1111 drops them all from the text.

    ``<lora:NAME>`` is weight 1; ``<lora:NAME:TE:UNET>`` gives the UNet its own weight; named
    ``te=``/``unet=`` arguments work as in A1111. Other kinds (hypernet, ...) come back unread.
    """
    loras: list[LoraTag] = []
    others: list[str] = []

    def found(match: re.Match) -> str:
        kind, args = match.group(1), match.group(2).split(":")
        if kind not in LORA_KINDS:
            others.append(match.group(0))
            return ""
        positional = [a for a in args if len(a.split("=", 2)) != 2]
        named = dict(a.split("=", 1) for a in args if len(a.split("=", 2)) == 2)
        if not positional:
            others.append(match.group(0))
            return ""
        tag = match.group(0)
        weight = _multiplier(positional[1], tag) if len(positional) > 1 else _multiplier(named.get("te", "1"), tag)
        unet = (_multiplier(positional[2], tag) if len(positional) > 2
                else _multiplier(named["unet"], tag) if "unet" in named else weight)
        loras.append(LoraTag(positional[0], weight, unet))
        return ""

    return _EXTRA_NETWORK.sub(found, text), loras, others


# --- AND (composable diffusion) ---------------------------------------------------------------

_AND = re.compile(r"\bAND\b")
_SUBPROMPT_WEIGHT = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")


def split_subprompts(text: str) -> list[tuple[str, float]]:
    """A1111's ``AND`` split: each sub-prompt with its trailing ``:WEIGHT`` (1.0 when absent) taken off."""
    parts = []
    for sub in _AND.split(text):
        match = _SUBPROMPT_WEIGHT.search(sub)
        if match is None:
            parts.append((sub, 1.0))
        else:
            parts.append((match.group(1), float(match.group(2)) if match.group(2) is not None else 1.0))
    return parts


# --- prompt editing and alternation -------------------------------------------------------------

@dataclass
class _Edit:
    before: list | None
    after: list
    when: str  # the number as written: "0.5" is a fraction of the steps, "5" a step


@dataclass
class _Alternation:
    options: list[list]


_Item = str | _Edit | _Alternation

_SPECIAL = set("\\[]():|")
_PLAIN_RUN = re.compile(r"[^\\\[\]():|]+")
_NUMBER = r"[+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+)"
_WHEN_TAIL = re.compile(r"\s*(" + _NUMBER + r")\s*\]")


class _Unparsable(Exception):
    pass


class _ScheduleParser:
    """Recursive descent over A1111's schedule grammar; bracket constructs that do not close are plain text."""

    def __init__(self, text: str):
        self.text = text
        self.prompts: dict[int, tuple[list[_Item], int]] = {}
        self.constructs: dict[int, tuple[list[_Item], int] | None] = {}
        self.depth = 0

    def parse(self) -> list[_Item]:
        items: list[_Item] = []
        text, i = self.text, 0
        while i < len(text):
            part, i = self.prompt(i)
            items += part
            if i < len(text):
                if text[i] not in "[]():":
                    raise _Unparsable  # a "|" outside [a|b], or a backslash escaping nothing
                items.append(text[i])
                i += 1
        return items

    def prompt(self, i: int) -> tuple[list[_Item], int]:
        """The longest run of text and constructs from ``i``; stops where a construct cannot start."""
        if i in self.prompts:
            return self.prompts[i]
        start, text, items = i, self.text, []
        while i < len(text):
            char = text[i]
            if char not in _SPECIAL:
                end = _PLAIN_RUN.match(text, i).end()
                items.append(text[i:end])
                i = end
            elif char == "\\" and i + 1 < len(text) and text[i + 1] != "\n":
                items.append(text[i:i + 2])
                i += 2
            elif char in "([":
                found = self.construct(i)
                if found is None:
                    break
                items += found[0]
                i = found[1]
            else:
                break
        self.prompts[start] = (items, i)
        return items, i

    def construct(self, i: int) -> tuple[list[_Item], int] | None:
        if i not in self.constructs:
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise _Unparsable
            self.constructs[i] = self._round(i) if self.text[i] == "(" else self._square(i)
            self.depth -= 1
        return self.constructs[i]

    def _at(self, i: int, char: str) -> bool:
        return i < len(self.text) and self.text[i] == char

    def _round(self, i: int) -> tuple[list[_Item], int] | None:
        first, j = self.prompt(i + 1)
        if self._at(j, ")"):
            return ["(", *first, ")"], j + 1
        if self._at(j, ":"):
            second, k = self.prompt(j + 1)
            if self._at(k, ")"):
                return ["(", *first, ":", *second, ")"], k + 1
        return None

    def _square(self, i: int) -> tuple[list[_Item], int] | None:
        first, j = self.prompt(i + 1)
        if self._at(j, "]"):
            return ["[", *first, "]"], j + 1
        if self._at(j, "|"):
            options = [first]
            while self._at(j, "|"):
                option, j = self.prompt(j + 1)
                options.append(option)
            return ([_Alternation(options)], j + 1) if self._at(j, "]") else None
        if self._at(j, ":"):
            when = _WHEN_TAIL.match(self.text, j + 1)
            if when:
                return [_Edit(None, first, when.group(1))], when.end()
            second, k = self.prompt(j + 1)
            if self._at(k, ":"):
                when = _WHEN_TAIL.match(self.text, k + 1)
                if when:
                    return [_Edit(first, second, when.group(1))], when.end()
        return None


def _edit_step(when: str, steps: int, hires_steps: int | None) -> int:
    """The last step (A1111 counting) that shows an edit's "from" text."""
    fraction = "." in when
    if hires_steps is None:
        value = float(when) * steps if fraction else float(when)
    else:  # A1111's hires pass: numbers above 1.0 / above the first pass's steps reach into it
        value = (float(when) - 1.0) * hires_steps if fraction else float(when) - steps
    limit = hires_steps if hires_steps is not None else steps
    return min(limit, int(max(min(value, 1e12), -1e12)))


def _walk(items: list[_Item]):
    for item in items:
        if isinstance(item, _Edit):
            yield item
            yield from _walk(item.before or [])
            yield from _walk(item.after)
        elif isinstance(item, _Alternation):
            yield item
            for option in item.options:
                yield from _walk(option)


def _render(items: list[_Item], step: int, whens: dict[int, int]) -> str:
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, _Edit):
            out.append(_render((item.before or []) if step <= whens[id(item)] else item.after, step, whens))
        else:
            out.append(_render(item.options[(step - 1) % len(item.options)], step, whens))
    return "".join(out)


def prompt_schedule(text: str, steps: int, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """A1111's ``get_learned_conditioning_prompt_schedules`` for one prompt: [(end step, text), ...].

    A text conditions the 0-based sampling steps from the previous entry's end step + 1 up to its
    own end step, inclusive (A1111's rule: the first entry with ``step <= end``). With
    ``hires_steps``, the schedule is A1111's for the hires pass. Text that A1111's grammar
    cannot parse (a ``|`` outside ``[a|b]``) conditions every step, unchanged.
    """
    total = hires_steps if hires_steps is not None else steps
    try:
        items = _ScheduleParser(text).parse()
    except _Unparsable:
        return [(total, text)]
    whens: dict[int, int] = {}
    ends = {total}
    for node in _walk(items):
        if isinstance(node, _Edit):
            whens[id(node)] = _edit_step(node.when, steps, hires_steps)
            if whens[id(node)] >= 1:
                ends.add(whens[id(node)])
        else:
            ends.update(range(1, total + 1))
    return [(end, _render(items, end, whens)) for end in sorted(ends)]


def schedule_index(schedule: list[tuple[int, str]] | list[tuple[int, object]], step: int) -> int:
    """Which entry of a schedule conditions 0-based sampling step ``step`` (A1111: the first whose end >= step)."""
    for index, (end, _) in enumerate(schedule):
        if step <= end:
            return index
    return 0  # past the end: A1111 falls back to the first entry


# --- attention (emphasis) -----------------------------------------------------------------------

_ATTENTION_TOKEN = re.compile(
    r"""
    \\[\\()\[\]]             # an escaped bracket or backslash: that character, literally
  | \\                       # a lone backslash: dropped
  | [(\[]                    # opens emphasis
  | :\s*([+-]?[.\d]+)\s*\)   # closes ( with an explicit weight
  | [)\]]                    # closes emphasis
  | [^\\()\[\]:]+            # text
  | :                        # a colon that closes nothing: text
    """,
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)
ROUND_FACTOR = 1.1
SQUARE_FACTOR = 1 / 1.1


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split one (scheduled) text into (text, weight) runs as A1111's ``parse_prompt_attention`` does.

    Unclosed brackets still weigh what follows them; runs of equal weight merge; ``BREAK``
    becomes :data:`BREAK_MARK`. Raises :class:`PromptSyntaxError` for ``(word:1.2.3)``, and for
    more than :data:`MAX_OPEN_BRACKETS` brackets open at once (A1111 has no limit).
    """
    runs: list[list] = []
    open_round: list[int] = []
    open_square: list[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    for match in _ATTENTION_TOKEN.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0])
        elif token in "([":
            (open_round if token == "(" else open_square).append(len(runs))
            if len(open_round) + len(open_square) > MAX_OPEN_BRACKETS:
                raise PromptSyntaxError(f"More than {MAX_OPEN_BRACKETS} brackets are open at once; close some, "
                                        "or write \\( and \\[ for literal brackets.")
        elif weight is not None and open_round:
            try:
                factor = float(weight)
            except ValueError:
                raise PromptSyntaxError(
                    f"The weight {weight!r} in {token!r} is not a number; write it like (word:1.2).") from None
            scale(open_round.pop(), factor)
        elif token == ")" and open_round:
            scale(open_round.pop(), ROUND_FACTOR)
        elif token == "]" and open_square:
            scale(open_square.pop(), SQUARE_FACTOR)
        else:
            for index, part in enumerate(_BREAK.split(token)):
                if index:
                    runs.append(list(BREAK_MARK))
                runs.append([part, 1.0])
    for start in open_round:
        scale(start, ROUND_FACTOR)
    for start in open_square:
        scale(start, SQUARE_FACTOR)
    merged: list[list] = []
    for run in runs or [["", 1.0]]:
        if merged and merged[-1][1] == run[1]:
            merged[-1][0] += run[0]
        else:
            merged.append(run)
    return [(text_, weight_) for text_, weight_ in merged]


def is_break(run: tuple[str, float]) -> bool:
    """True for the run that marks a BREAK (A1111 tests both the text and the -1 weight)."""
    return run[0] == BREAK_MARK[0] and run[1] == BREAK_MARK[1]


# --- the whole reading -----------------------------------------------------------------------------

def plan_prompt(text: str, steps: int, *, negative: bool = False, hires_steps: int | None = None,
                comments: bool = True) -> PromptPlan:
    """Read a prompt as A1111 does for ``steps`` sampling steps: comments, extra networks, AND, editing.

    Negative prompts keep their extra-network tags and ``AND`` as text, as in A1111. What PICO
    cannot apply (``AND``, a guidance weight it is not asked to apply) is named in ``warnings``.
    """
    if comments:
        text = strip_comments(text)
    if negative:
        return PromptPlan(prompt_schedule(text, steps, hires_steps))
    text, loras, others = extract_extra_networks(text)
    warnings = []
    if others:
        warnings.append(f"Extra networks {', '.join(others)} are not supported and were ignored "
                        "(only <lora:NAME:WEIGHT> is).")
    subprompts = split_subprompts(text)
    factor = 1.0
    if len(subprompts) > 1:
        warnings.append("AND (composable diffusion) is not supported: the sub-prompts were encoded as one prompt.")
        text = " AND ".join(sub for sub, _ in subprompts)
    else:
        text, factor = subprompts[0]
    return PromptPlan(prompt_schedule(text, steps, hires_steps), loras, factor, warnings)


def short_phrase_shape(phrase: str, negative: str | None, steps: int) -> tuple[float, int] | None:
    """What phrases must share to be encoded in one batch, when known without a tokenizer.

    (guidance weight, 1) when both phrases fit one 75-token chunk for sure (a token is at least a
    byte); None when counting their chunks needs the model's tokenizer.
    """
    negative = negative or ""
    if len(phrase.encode("utf-8")) > TOKENS_PER_CHUNK or len(negative.encode("utf-8")) > TOKENS_PER_CHUNK \
            or "BREAK" in phrase + negative:
        return None
    return (plan_prompt(phrase, steps).guidance_factor, 1)


def uses_syntax(text: str | None, *, negative: bool = False) -> bool:
    """True when A1111 would read ``text`` differently from its literal characters (weights, editing, tags...).

    Trailing whitespace does not count: A1111 drops it and CLIP's tokenizer ignores it.
    """
    if not text:
        return False
    try:
        plan = plan_prompt(text, 2, negative=negative)
        if plan.loras or plan.warnings or plan.guidance_factor != 1.0 or len(plan.schedule) > 1:
            return True
        scheduled = plan.schedule[0][1]
        if scheduled.rstrip() != text.rstrip():
            return True
        return parse_attention(scheduled) != [(scheduled, 1.0)]
    except PromptSyntaxError:
        return True
