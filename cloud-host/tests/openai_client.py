"""The official `openai` Python client against a running cloud host, unchanged: chat, streaming,
log-probs, the legacy API, the offload extension through `extra_body`, and errors.

Run by tests/openai_python.rs as `python openai_client.py BASE_URL API_KEY`; prints OK at the end.
"""

import sys

import openai

base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)
question = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

models = client.models.list()
model = models.data[0].id
assert model, models

# Chat, with log-probs.
r = client.chat.completions.create(
    model=model, messages=question, temperature=0, max_tokens=24, logprobs=True, top_logprobs=2
)
text = r.choices[0].message.content
assert "Paris" in text, text
assert r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason
lp = r.choices[0].logprobs.content
assert len(lp) == r.usage.completion_tokens, (len(lp), r.usage)
assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in lp), lp
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

# The offload extension goes in through extra_body and comes back as an extra field.
r2 = client.chat.completions.create(
    model=model, messages=question, temperature=0, max_tokens=24,
    extra_body={"offload": {"task": "chat", "request_id": "py-1"}},
)
ext = r2.model_extra["offload"]
assert ext["answered_by"] == "cloud", ext
assert ext["request_id"] == "py-1", ext
hop = ext["hops"][-1]
assert hop["tier"] == "cloud" and 0 < hop["confidence"] < 1, hop
assert r2.choices[0].message.content == text

# Streaming gives the same text; usage comes last.
chunks = list(
    client.chat.completions.create(
        model=model, messages=question, temperature=0, max_tokens=24, stream=True,
        stream_options={"include_usage": True},
    )
)
streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert streamed == text, (streamed, text)
assert chunks[-1].usage.completion_tokens == r.usage.completion_tokens

# The legacy API.
c = client.completions.create(
    model=model, prompt="The capital of France is", max_tokens=5, temperature=0, logprobs=1
)
assert c.choices[0].text, c
assert len(c.choices[0].logprobs.tokens) == c.usage.completion_tokens

# Errors arrive as the client's typed exceptions, with the server's message.
def expect(exc, status, **kwargs):
    try:
        client.chat.completions.create(model=model, **kwargs)
    except exc as e:
        assert e.status_code == status, (e.status_code, e)
        assert e.message, e
        return e
    raise AssertionError(f"expected {exc.__name__}")

expect(openai.UnprocessableEntityError, 422, messages=question, temperature=5)
expect(openai.UnprocessableEntityError, 422, messages=[])
e = expect(openai.BadRequestError, 400, messages=question, max_tokens=4000)
assert e.code == "context_length_exceeded", e.code
expect(openai.UnprocessableEntityError, 422, messages=[{"role": "user"}])
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401

print("OK")
