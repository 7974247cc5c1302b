"""The official openai client against a Bantam route (BANTAM_BASE_URL, route "auto").

The route keeps routine prompts on the local backend "small" and sends prompts that
mention a contract to the upstream backend "large" (see tests in routing.rs).
"""
import os
import sys

import openai

BASE_URL = os.environ["BANTAM_BASE_URL"]
client = openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0)


def ask(text, **kw):
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        temperature=0,
        max_tokens=12,
        **kw,
    )
    return raw.headers, raw.parse()


def main():
    ids = [m.id for m in client.models.list()]
    assert "auto" in ids and "large" in ids and "small" in ids, ids

    h, c = ask("Say hello.")
    assert h["x-bantam-backend"] == "small", dict(h)
    assert h["x-bantam-route-reason"] == "default", dict(h)
    assert float(h["x-bantam-cost-usd"]) == 0.0
    assert c.choices[0].message.content

    h, c = ask("Is this contract clause enforceable?")
    assert h["x-bantam-backend"] == "large", dict(h)
    assert h["x-bantam-route-reason"] == "rule:hard-topic", dict(h)
    u = c.usage
    want = u.prompt_tokens * 0.15e-6 + u.completion_tokens * 0.6e-6
    assert abs(float(h["x-bantam-cost-usd"]) - want) < 1e-9, (h["x-bantam-cost-usd"], want)
    assert c.model == "qwen2.5-coder:0.5b", c.model

    # Streaming through the route to the upstream, with usage (and its cost).
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Summarise the contract in one line."}],
        temperature=0,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text, "streamed text"
    assert usage and usage.completion_tokens > 0, usage
    assert usage.model_extra.get("cost_usd", 0) > 0, usage
    print("OK")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print("FAILED", e, file=sys.stderr)
        raise
