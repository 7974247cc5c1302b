"""The official `openai` Python package against a running `bantam serve`.

Run by the Rust test `openai_python_client_works_unchanged`, which starts the
server and sets BANTAM_BASE_URL and BANTAM_MODEL.
"""

import os
import unittest

import openai

BASE_URL = os.environ["BANTAM_BASE_URL"]
MODEL = os.environ.get("BANTAM_MODEL", "smollm2:135m")


def client():
    return openai.OpenAI(base_url=BASE_URL, api_key="unused", max_retries=0)


class OpenAIClient(unittest.TestCase):
    def test_models_list(self):
        ids = [m.id for m in client().models.list()]
        self.assertIn(MODEL, ids)

    def test_chat(self):
        r = client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "system", "content": "You are brief."}, {"role": "user", "content": "What is 2+2?"}],
            temperature=0,
            max_tokens=20,
        )
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertTrue(r.choices[0].message.content.strip())
        self.assertIn(r.choices[0].finish_reason, ("stop", "length"))
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)

    def test_chat_stream_equals_non_stream(self):
        c = client()
        msgs = [{"role": "user", "content": "Name a planet."}]
        full = c.chat.completions.create(model=MODEL, messages=msgs, temperature=0, max_tokens=24)
        stream = c.chat.completions.create(
            model=MODEL, messages=msgs, temperature=0, max_tokens=24, stream=True, stream_options={"include_usage": True}
        )
        parts, finish, usage = [], None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for ch in chunk.choices:
                if ch.delta.content:
                    parts.append(ch.delta.content)
                if ch.finish_reason:
                    finish = ch.finish_reason
        self.assertEqual("".join(parts), full.choices[0].message.content)
        self.assertEqual(finish, full.choices[0].finish_reason)
        self.assertEqual(usage.completion_tokens, full.usage.completion_tokens)

    def test_completions_and_stop(self):
        c = client()
        r = c.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0)
        text = r.choices[0].text
        self.assertTrue(text)
        r2 = c.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=["7"])
        self.assertNotIn("7", r2.choices[0].text)
        if "7" in text:
            self.assertEqual(r2.choices[0].text, text[: text.index("7")])
            self.assertEqual(r2.choices[0].finish_reason, "stop")

    def test_completions_stream(self):
        c = client()
        full = c.completions.create(model=MODEL, prompt="The sun is", max_tokens=10, temperature=0)
        parts = [ch.choices[0].text for ch in c.completions.create(model=MODEL, prompt="The sun is", max_tokens=10, temperature=0, stream=True) if ch.choices]
        self.assertEqual("".join(parts), full.choices[0].text)

    def test_max_tokens(self):
        r = client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=3, temperature=0
        )
        self.assertEqual(r.usage.completion_tokens, 3)
        self.assertEqual(r.choices[0].finish_reason, "length")

    def test_seed_reproducible(self):
        c = client()
        kw = dict(model=MODEL, messages=[{"role": "user", "content": "Invent a word."}], temperature=1.0, seed=7, max_tokens=16)
        self.assertEqual(c.chat.completions.create(**kw).choices[0].message.content, c.chat.completions.create(**kw).choices[0].message.content)

    def test_logprobs(self):
        r = client().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0, logprobs=True, top_logprobs=2
        )
        content = r.choices[0].logprobs.content
        self.assertTrue(content)
        for tok in content:
            self.assertLessEqual(tok.logprob, 0.0)
            self.assertEqual(len(tok.top_logprobs), 2)

    def test_errors_are_typed(self):
        c = client()
        with self.assertRaises(openai.NotFoundError):
            c.chat.completions.create(model="no-such-model:1b", messages=[{"role": "user", "content": "x"}])
        with self.assertRaises(openai.BadRequestError) as e:
            c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=5)
        self.assertIn("temperature", str(e.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
