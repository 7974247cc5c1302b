"""Render the chat templates in crates/bantam-engine/tests/fixtures/templates with
the reference implementation (Jinja2 configured as Hugging Face transformers does)
and write expected.json, which the Rust test `chat_templates_match_reference`
compares Bantam's minijinja rendering against.

    python3 -m pip install jinja2 && python3 tests/python/render_templates.py
"""

import json
import pathlib

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = pathlib.Path(__file__).resolve().parents[2] / "crates/bantam-engine/tests/fixtures/templates"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]

CASES = {
    "user_only": {"messages": [{"role": "user", "content": "Hello there"}]},
    "system_user": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]},
    "multi_turn": {
        "messages": [
            {"role": "system", "content": "You are a support bot."},
            {"role": "user", "content": "My order is late."},
            {"role": "assistant", "content": "Sorry to hear that. What is the order number?"},
            {"role": "user", "content": "A-1234 — ünïcode & <tags>"},
        ]
    },
    "no_generation_prompt": {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "add_generation_prompt": False},
    "tools": {"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": TOOLS},
}


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    out = {}
    for path in sorted(HERE.glob("*.jinja")):
        tmpl = env.from_string(path.read_text())
        out[path.stem] = {}
        for name, case in CASES.items():
            if "tools" in case and "tools" not in path.read_text():
                continue
            out[path.stem][name] = tmpl.render(
                messages=case["messages"],
                tools=case.get("tools"),
                add_generation_prompt=case.get("add_generation_prompt", True),
                bos_token="<BOS>",
                eos_token="<EOS>",
            )
    (HERE / "cases.json").write_text(json.dumps(CASES, indent=1, ensure_ascii=False) + "\n")
    (HERE / "expected.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {sum(len(v) for v in out.values())} renderings")


if __name__ == "__main__":
    main()
