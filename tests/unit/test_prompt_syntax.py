"""A1111's prompt syntax: the same text gives the same schedules and weighted runs as the webui.

The expected values are A1111 1.10's doctests (modules/prompt_parser.py) and outputs of its
parser recorded for harder cases (nesting, stray brackets, the hires pass).
"""

from __future__ import annotations

import pytest

from pico.prompt_syntax import (
    BREAK_MARK,
    LoraTag,
    PromptSyntaxError,
    extract_extra_networks,
    parse_attention,
    plan_prompt,
    prompt_schedule,
    schedule_index,
    split_subprompts,
    strip_comments,
    uses_syntax,
)

ALTERNATING = [(1, "a"), (2, "(b:1.1)"), (3, "a"), (4, "(b:1.1)"), (5, "a"), (6, "(b:1.1)"), (7, "a"),
               (8, "(b:1.1)"), (9, "a"), (10, "(b:1.1)")]


@pytest.mark.parametrize(("text", "schedule"), [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    # A1111's doctest says [(5, "a  c"), (10, "a {b|d{ c")] ("not handling this right now"), but its own
    # grammar cannot put a "|" in plain text, so its parser fails and keeps the prompt as it is:
    ("a [{b|d{:.5] c", [(10, "a [{b|d{:.5] c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", ALTERNATING),
    ("[fe|]male", [(s, "female" if s % 2 else "male") for s in range(1, 11)]),
    ("[fe|||]male", [(s, "female" if s % 4 == 1 else "male") for s in range(1, 11)]),
])
def test_schedules_match_a1111_doctests(text, schedule):
    assert prompt_schedule(text, 10) == schedule


@pytest.mark.parametrize(("text", "schedule"), [
    ("a [b:.5] c", [(10, "a b c")]),
    ("a [b:1.5] c", [(5, "a  c"), (10, "a b c")]),
])
def test_hires_pass_schedules_match_a1111_doctests(text, schedule):
    assert prompt_schedule(text, 10, hires_steps=10) == schedule


@pytest.mark.parametrize(("text", "schedule"), [
    ("a [b:c:0.5] d", [(2, "a b d"), (4, "a c d")]),
    ("[a:[b:1]:2]", [(1, "a"), (2, "a"), (4, "b")]),
    ("[a|b|c]", [(1, "a"), (2, "b"), (3, "c"), (4, "a")]),
    ("[a:b:0]", [(4, "b")]),
    ("[a:b:-1]", [(4, "b")]),
    ("a (b|c) [d:3]", [(4, "a (b|c) [d:3]")]),  # a "|" outside [a|b]: A1111 reads the whole prompt literally
    ("x [a:b:1.0] y", [(4, "x a y")]),
    ("[a: b :3 ]", [(3, "a"), (4, " b ")]),
    ("[a:b:1e1]", [(4, "a")]),
    ("a\\", [(4, "a\\")]),
    ("[a:b:3:4]", [(4, "[a:b:3:4]")]),
    ("(a [b:c:2]) d", [(2, "(a b) d"), (4, "(a c) d")]),
    ("[ (x:1.2) | y ]", [(1, " (x:1.2) "), (2, " y "), (3, " (x:1.2) "), (4, " y ")]),
    ("a [b:c:2] [d|e]", [(1, "a b d"), (2, "a b e"), (3, "a c d"), (4, "a c e")]),
    ("[a::2]", [(2, "a"), (4, "")]),
    ("[:a:2]", [(2, ""), (4, "a")]),
])
def test_schedules_match_a1111_on_harder_cases(text, schedule):
    assert prompt_schedule(text, 4) == schedule


def test_the_schedule_entry_for_each_step_follows_a1111():
    schedule = prompt_schedule("a [b:c:2]", 4)  # [(2, "a b"), (4, "a c")]
    assert [schedule_index(schedule, step) for step in range(4)] == [0, 0, 0, 1]  # steps 0, 1, 2 are "<= 2"


def test_deep_nesting_is_read_literally_instead_of_overflowing():
    text = "[" * 5000 + "a:b:1" + "]" * 5000
    assert prompt_schedule(text, 4) == [(4, text)]


@pytest.mark.parametrize(("text", "runs"), [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55),
      (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1)]),
])
def test_attention_matches_a1111_doctests(text, runs):
    assert parse_attention(text) == runs


@pytest.mark.parametrize(("text", "runs"), [
    ("((a)", [("a", 1.2100000000000002)]),
    ("[[a]:1.5)", [("a", 0.8264462809917354), (":1.5)", 0.9090909090909091)]),
    ("a BREAK b", [("a", 1.0), BREAK_MARK, ("b", 1.0)]),
    ("(BREAK)", [("", 1.1), ("BREAK", -1.1), ("", 1.1)]),  # a weighted BREAK is text to A1111
    ("a\\b", [("ab", 1.0)]),
    ("(a:0)", [("a", 0.0)]),
    ("x (a: 1.5 ) y", [("x ", 1.0), ("a", 1.5), (" y", 1.0)]),
    ("a:b", [("a:b", 1.0)]),
    ("(a:b)", [("a:b", 1.1)]),
    (")a]", [(")a]", 1.0)]),
    ("", [("", 1.0)]),
])
def test_attention_matches_a1111_on_harder_cases(text, runs):
    assert parse_attention(text) == runs


def test_a_weight_that_is_not_a_number_is_a_syntax_error():
    with pytest.raises(PromptSyntaxError, match="1.2.3"):
        parse_attention("a (b:1.2.3)")


def test_weighting_cost_is_bounded_by_a_limit_on_open_brackets():
    assert parse_attention("(" * 200 + "a") == [("a", pytest.approx(1.1 ** 200))]
    with pytest.raises(PromptSyntaxError, match="More than 200 brackets are open at once"):
        parse_attention("(" * 101 + "[" * 100 + "a")
    assert uses_syntax("(a" * 10_000)  # the limit makes it a syntax error rather than seconds of work


def test_lora_tags_are_cut_out_with_their_weights():
    text, loras, others = extract_extra_networks("a cat <lora:film:0.7>, <lora:grain> <lyco:x:0.5:0.2> "
                                                 "<lora:y:te=0.3:unet=0.9> <hypernet:anime:1>")
    assert text == "a cat ,    "
    assert loras == [LoraTag("film", 0.7, 0.7), LoraTag("grain", 1.0, 1.0), LoraTag("x", 0.5, 0.2),
                     LoraTag("y", 0.3, 0.9)]
    assert others == ["<hypernet:anime:1>"]
    with pytest.raises(PromptSyntaxError, match="heavy"):
        extract_extra_networks("<lora:x:heavy>")


def test_comments_are_removed_as_a1111_does():
    assert strip_comments("# a note\ncat # hidden\ndog") == "\ncat \ndog"


def test_and_splits_sub_prompts_with_their_guidance_weights():
    assert split_subprompts("a cat:1.5 AND a dog") == [("a cat", 1.5), (" a dog", 1.0)]
    assert split_subprompts("a cat ") == [("a cat", 1.0)]


def test_a_plan_reads_a_positive_prompt_in_a1111_order():
    plan = plan_prompt("a [cat:dog:0.5] <lora:film:0.7> # note", 4)
    assert plan.schedule == [(2, "a cat"), (4, "a dog")]
    assert plan.loras == [LoraTag("film", 0.7, 0.7)]
    assert plan.warnings == []
    weighted = plan_prompt("a cat:1.5", 4)
    assert (weighted.texts, weighted.guidance_factor) == (["a cat"], 1.5)
    composed = plan_prompt("a cat AND a dog <hypernet:h:1>", 4)
    assert composed.texts == ["a cat AND  a dog"]
    assert composed.warnings == [
        "Extra networks <hypernet:h:1> are not supported and were ignored (only <lora:NAME:WEIGHT> is).",
        "AND (composable diffusion) is not supported: the sub-prompts were encoded as one prompt.",
    ]


def test_a_negative_plan_keeps_tags_and_and_as_text():
    plan = plan_prompt("blurry <lora:x:1> AND ugly:2 [a|b]", 2, negative=True)
    assert plan.schedule == [(1, "blurry <lora:x:1> AND ugly:2 a"), (2, "blurry <lora:x:1> AND ugly:2 b")]
    assert (plan.loras, plan.warnings, plan.guidance_factor) == ([], [], 1.0)


@pytest.mark.parametrize(("text", "expected"), [
    ("a ginger cat, sitting", False),
    ("a ginger cat ", False),
    ("cats: the musical", False),
    ("", False),
    (None, False),
    ("a (ginger) cat", True),
    ("a [ginger] cat", True),
    ("a \\(ginger\\) cat", True),
    ("a ginger cat BREAK a hat", True),
    ("a [ginger:black:0.5] cat", True),
    ("a [ginger|black] cat", True),
    ("a cat <lora:film:1>", True),
    ("a cat AND a dog", True),
    ("a cat:1.2", True),
    ("a cat # comment", True),
    ("a (cat:1.2.3)", True),
])
def test_uses_syntax_tells_plain_prompts_apart(text, expected):
    assert uses_syntax(text) is expected
