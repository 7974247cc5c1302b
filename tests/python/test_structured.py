"""Structured output and tool calling through the official `openai` package.

    BANTAM_BASE_URL=http://127.0.0.1:PORT/v1 BANTAM_MODEL=smollm2:135m \
    BANTAM_TOOL_MODEL=qwen2.5-coder:0.5b python3 tests/python/test_structured.py

Every output is parsed and validated here (jsonschema, formats on) — the server's
own validation is not trusted by this test.
"""

import json
import os
import re

import jsonschema
import openai

BASE = os.environ["BANTAM_BASE_URL"]
MODEL = os.environ.get("BANTAM_MODEL", "smollm2:135m")
TOOL_MODEL = os.environ.get("BANTAM_TOOL_MODEL", "qwen2.5-coder:0.5b")
client = openai.OpenAI(base_url=BASE, api_key="x", max_retries=0, timeout=600)


def validate(schema, value):
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(value)


TICKET = {
    "type": "object",
    "properties": {
        "customer": {"type": "string", "maxLength": 40},
        "priority": {"type": "string", "enum": ["low", "medium", "high"]},
        "order_id": {"type": "integer", "minimum": 1, "maximum": 99999},
        "refund": {"type": "boolean"},
        "items": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
    },
    "required": ["customer", "priority", "order_id", "refund", "items"],
    "additionalProperties": False,
}
PROMPT = "Ticket from Maria Lopez: my order 4521 (two lamps and a rug) arrived broken, I want my money back today!"


def test_json_schema():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        response_format={"type": "json_schema", "json_schema": {"name": "ticket", "schema": TICKET, "strict": True}},
        temperature=0,
        max_tokens=200,
    )
    assert r.choices[0].finish_reason == "stop", r
    validate(TICKET, json.loads(r.choices[0].message.content))


def test_json_schema_stream():
    chunks = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPT}],
        response_format={"type": "json_schema", "json_schema": {"name": "ticket", "schema": TICKET, "strict": True}},
        temperature=0,
        max_tokens=200,
        stream=True,
    )
    text, finish = "", None
    for c in chunks:
        if c.choices:
            text += c.choices[0].delta.content or ""
            finish = c.choices[0].finish_reason or finish
    assert finish == "stop"
    validate(TICKET, json.loads(text))


def test_json_object():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_extensions_regex_and_choice():
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give a US phone number."}],
        response_format={"type": "regex", "regex": r"\(\d{3}\) \d{3}-\d{4}"},
        temperature=0,
        max_tokens=30,
    )
    assert re.fullmatch(r"\(\d{3}\) \d{3}-\d{4}", r.choices[0].message.content), r
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Is the sky green?"}],
        response_format={"type": "choice", "choices": ["yes", "no", "unsure"]},
        temperature=0,
    )
    assert r.choices[0].message.content in ("yes", "no", "unsure"), r


def test_keywords_are_validated_and_uncheckable_formats_are_a_400():
    # uniqueItems cannot be enforced token by token: it is validated on the output
    # (and generated again if it fails), not refused.
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Three different small numbers."}],
        response_format={"type": "json_schema", "json_schema": {"name": "s", "strict": True, "schema": {
            "type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "uniqueItems": True, "maxItems": 3}}},
        temperature=0,
        max_tokens=40,
    )
    items = json.loads(r.choices[0].message.content)
    assert len(items) == len(set(items)), items
    try:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "string", "format": "zipcode"}}},
        )
    except openai.BadRequestError as e:
        assert "zipcode" in str(e), e
    else:
        raise AssertionError("an unknown format was accepted")


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 40}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current local time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "maxLength": 40}},
            "required": ["timezone"],
            "additionalProperties": False,
        },
    },
}
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, TIME)}


def check_calls(calls):
    assert calls, "no tool calls"
    for c in calls:
        assert c.type == "function" and c.id.startswith("call_"), c
        validate(SCHEMAS[c.function.name], json.loads(c.function.arguments))


def test_tools_required_and_named():
    msgs = [{"role": "user", "content": "What's the weather in Paris in celsius?"}]
    r = client.chat.completions.create(model=TOOL_MODEL, messages=msgs, tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=200)
    assert r.choices[0].finish_reason == "tool_calls", r
    check_calls(r.choices[0].message.tool_calls)
    r = client.chat.completions.create(
        model=TOOL_MODEL, messages=msgs, tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, temperature=0, max_tokens=200,
    )
    calls = r.choices[0].message.tool_calls
    check_calls(calls)
    assert [c.function.name for c in calls] == ["get_time"]
    # The small model, told nothing about tools, just answers.
    r = client.chat.completions.create(model=MODEL, messages=msgs, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=20)
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


def test_tools_auto_and_round_trip():
    msgs = [{"role": "user", "content": "What's the weather in Oslo?"}]
    r = client.chat.completions.create(model=TOOL_MODEL, messages=msgs, tools=[WEATHER], temperature=0, max_tokens=200)
    m = r.choices[0].message
    if m.tool_calls:
        assert r.choices[0].finish_reason == "tool_calls"
        check_calls(m.tool_calls)
        # Send the result back, as an application would.
        msgs += [
            {"role": "assistant", "content": None, "tool_calls": [tc.model_dump() for tc in m.tool_calls]},
            {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": '{"temp_c": 4, "sky": "snow"}'},
        ]
        r = client.chat.completions.create(model=TOOL_MODEL, messages=msgs, tools=[WEATHER], temperature=0, max_tokens=60)
        # The history is accepted (its string arguments reach the template as the
        # object). What the small model does next is its own choice: with the
        # transcript rendered correctly, Qwen2.5-Coder-0.5B tends to call the tool
        # again rather than answer; either is a well-formed answer.
        m = r.choices[0].message
        if m.tool_calls:
            check_calls(m.tool_calls)
        else:
            assert m.content, r
    else:
        assert m.content, r


def test_streamed_tool_calls():
    stream = client.chat.completions.create(
        model=TOOL_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris and the time in Tokyo, please."}],
        tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=300, stream=True,
    )
    calls, finish, pieces = {}, None, 0
    for chunk in stream:
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        finish = ch.finish_reason or finish
        for tc in ch.delta.tool_calls or []:
            pieces += 1
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["args"] += tc.function.arguments
    assert finish == "tool_calls", finish
    assert calls and pieces > len(calls), (calls, pieces)  # arguments really streamed
    for c in calls.values():
        assert c["id"].startswith("call_") and c["name"] in SCHEMAS, c
        validate(SCHEMAS[c["name"]], json.loads(c["args"]))


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print("ok", name, flush=True)
    print("OK")
