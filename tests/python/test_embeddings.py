"""The official openai client against Bantam's /v1/embeddings (BANTAM_BASE_URL)."""
import base64
import math
import os
import struct

import openai

client = openai.OpenAI(base_url=os.environ["BANTAM_BASE_URL"], api_key="unused", max_retries=0)
MODEL = "all-minilm:l6-v2"


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


texts = [
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "The tide comes in twice a day.",
]
r = client.embeddings.create(model=MODEL, input=texts)
vs = [d.embedding for d in r.data]
assert [d.index for d in r.data] == [0, 1, 2]
assert all(len(v) == 384 for v in vs), [len(v) for v in vs]
assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4 for v in vs), "L2-normalised"
assert cos(vs[0], vs[1]) > cos(vs[0], vs[2]) + 0.3, (cos(vs[0], vs[1]), cos(vs[0], vs[2]))
assert r.usage.prompt_tokens > 10, r.usage
# The client asks for base64 by default when numpy is around; ask explicitly too.
raw = client.embeddings.with_raw_response.create(model=MODEL, input=texts[0], encoding_format="base64")
b = raw.http_response.json()["data"][0]["embedding"]
floats = struct.unpack("<384f", base64.b64decode(b))
one = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float").data[0].embedding
assert max(abs(x - y) for x, y in zip(floats, one)) < 1e-6, "base64 decodes to the same floats"
assert max(abs(x - y) for x, y in zip(one, vs[0])) < 1e-3, "batched ≈ single"
try:
    client.embeddings.create(model=MODEL, input=[""])
    raise AssertionError("empty input accepted")
except openai.BadRequestError:
    pass
print("OK")
