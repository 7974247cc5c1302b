"""Structured output through the official `openai` Python package: every schema in
tests/fixtures/schemas.json, strict, against a running OpenAI-compatible server.

    python3 tests/python/test_schemas.py [--max-incomplete N] BASE_URL MODEL [MODEL...]
    python3 tests/python/test_schemas.py http://127.0.0.1:11434/v1 smollm2:135m

For each model: one `{"type": "json_object"}` request (the answer must parse as a
JSON object), then one strict `json_schema` request per fixture whose answer must
parse and validate (formats included) with jsonschema's Draft 2020-12 validator.
One line per request, a summary per model; exit status 1 if anything failed (an
API error, a finish_reason other than "stop", bad JSON or a schema violation).

A server may refuse an output it could not complete within max_tokens (Bantam:
HTTP 422 `structured_output_incomplete`; tiny models sometimes loop inside an
unbounded string). Such refusals are counted apart ("incomplete"): they are never
invalid outputs, but more than --max-incomplete of them per model fails the run.
"""

import json
import os
import sys
import time

import jsonschema
import openai

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "schemas.json")
SYSTEM = "Answer with JSON only."


def short(text, n=160):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def ask(client, model, prompt, response_format):
    """One request; returns (content, finish_reason, completion_tokens, seconds)."""
    t0 = time.perf_counter()
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        response_format=response_format,
        temperature=0,
        max_tokens=400,
        seed=1,
    )
    secs = time.perf_counter() - t0
    tokens = r.usage.completion_tokens if r.usage is not None else -1
    return r.choices[0].message.content or "", r.choices[0].finish_reason, tokens, secs


def check_json_object(client, model):
    """Returns (ok, line)."""
    prompt = 'Return a JSON object with the keys "city" and "country" for where the Eiffel Tower stands.'
    try:
        content, finish, tokens, secs = ask(client, model, prompt, {"type": "json_object"})
    except openai.OpenAIError as e:
        return False, f"FAIL {model} json_object: API error: {short(e)}"
    problem = None
    if finish != "stop":
        problem = f"finish_reason {finish!r}"
    else:
        try:
            value = json.loads(content)
            if not isinstance(value, dict):
                problem = f"not an object: {type(value).__name__}"
        except ValueError as e:
            problem = f"invalid JSON: {e}"
    status = "ok  " if problem is None else "FAIL"
    line = f"{status} {model} json_object tokens={tokens} {secs:.2f}s"
    if problem:
        line += f" -- {problem}: {short(content)}"
    return problem is None, line


def check_schema(client, model, entry):
    """Returns (ok, line)."""
    name, schema = entry["name"], entry["schema"]
    rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    try:
        content, finish, tokens, secs = ask(client, model, entry["prompt"], rf)
    except openai.UnprocessableEntityError as e:
        body = e.body if isinstance(e.body, dict) else {}
        code = body.get("code") or (body.get("error") or {}).get("code")
        if code == "structured_output_incomplete":
            return None, f"INCOMPLETE {model} {name}: {short(e)}"
        return False, f"FAIL {model} {name}: API error: {short(e)}"
    except openai.OpenAIError as e:
        return False, f"FAIL {model} {name}: API error: {short(e)}"
    problem = None
    if finish != "stop":
        problem = f"finish_reason {finish!r}"
    else:
        try:
            value = json.loads(content)
        except ValueError as e:
            problem = f"invalid JSON: {e}"
        else:
            v = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
            errors = sorted(v.iter_errors(value), key=lambda err: list(err.absolute_path))
            if errors:
                err = errors[0]
                where = "/".join(str(p) for p in err.absolute_path) or "(root)"
                problem = f"{len(errors)} schema error(s), first at {where}: {short(err.message, 120)}"
    status = "ok  " if problem is None else "FAIL"
    line = f"{status} {model} {name} tokens={tokens} {secs:.2f}s"
    if problem:
        line += f" -- {problem}: {short(content)}"
    return problem is None, line


def main(argv):
    max_incomplete = 0
    if len(argv) > 2 and argv[1] == "--max-incomplete":
        max_incomplete = int(argv[2])
        argv = [argv[0]] + argv[3:]
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base_url, models = argv[1], argv[2:]
    with open(FIXTURES) as f:
        entries = json.load(f)
    for e in entries:
        jsonschema.Draft202012Validator.check_schema(e["schema"])
    client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=600)
    summary, failed = [], False
    for model in models:
        obj_ok, line = check_json_object(client, model)
        print(line, flush=True)
        failed |= not obj_ok
        passed = incomplete = invalid = 0
        for e in entries:
            ok, line = check_schema(client, model, e)
            print(line, flush=True)
            if ok is None:
                incomplete += 1
            elif ok:
                passed += 1
            else:
                invalid += 1
        failed |= invalid > 0 or incomplete > max_incomplete
        summary.append(
            f"{model}: {passed}/{len(entries)} schema-valid, {invalid} failed, "
            f"{incomplete} refused as incomplete, json_object {'ok' if obj_ok else 'FAIL'}"
        )
    print()
    for line in summary:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
