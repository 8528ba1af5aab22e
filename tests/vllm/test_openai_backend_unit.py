"""The openai backend against a fake endpoint (no vLLM): retries with backoff, the API key
read from the named variable and never shown, token ids asked for (and not again from a
server that refuses them), records from ids / log-probs / usage only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.reasoning.sampling import Sample, request_seed
from core.reasoning.sampling.openai import OpenAIBackend, OpenAIError, _split

KEY = "sk-test-secret-0123456789"


class FakeServer:
    """Answers /v1/completions from ``reply(body) -> (status, json)``; records requests."""

    def __init__(self, reply):
        self.reply, self.requests, self.auth = reply, [], []
        self.retry_after: str | None = None
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.auth.append(self.headers.get("Authorization"))
                status, payload = outer.reply(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                if status == 429 and outer.retry_after:
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    servers = []

    def make(reply):
        servers.append(FakeServer(reply))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _choices(body, with_ids=False, with_lp=False):
    n = body["n"]
    out = []
    for i in range(n):
        text = f"{body['prompt']}|{i}|{body.get('seed')}"
        c = {"index": i, "text": text, "finish_reason": "length" if i % 2 else "stop"}
        if with_ids:
            c["token_ids"] = [10 + i, 11, 2]
        if with_lp:
            c["logprobs"] = {"tokens": ["a", "b"], "token_logprobs": [-0.5, -1.5]}
        out.append(c)
    return {"choices": out[::-1], "usage": {"completion_tokens": 7 * n}}  # any order


def test_retries_with_backoff_then_succeeds_and_key_is_never_shown(fake, monkeypatch):
    monkeypatch.setenv("ABLAB_TEST_KEY", KEY)
    fails = {"left": 3}

    def reply(body):
        if fails["left"]:
            fails["left"] -= 1
            return (503 if fails["left"] % 2 else 429), {"error": {"message": "busy"}}
        return 200, _choices(body, with_ids=True)

    srv = fake(reply)
    b = OpenAIBackend(srv.url, "m", api_key_env="ABLAB_TEST_KEY", backoff=0.01, concurrency=1)
    out = b.sample(["p0"], n=2, temperature=0.7, max_new_tokens=5, seed=3)
    assert b.retries == 3 and len(srv.requests) == 4
    assert srv.auth[-1] == f"Bearer {KEY}"
    assert out[0][0] == Sample(f"p0|0|{request_seed(3, 0)}", (10, 11, 2), None, "stop")
    assert out[0][1].finish_reason == "length"
    assert srv.requests[-1] == {"model": "m", "prompt": "p0", "max_tokens": 5, "n": 2,
                                "temperature": 0.7, "top_p": 1.0, "seed": request_seed(3, 0),
                                "return_token_ids": True}
    assert KEY not in repr(b) and KEY not in json.dumps(vars(b), default=str)


def test_gives_up_after_max_retries_and_fails_fast_on_4xx(fake, monkeypatch):
    monkeypatch.setenv("ABLAB_TEST_KEY", KEY)
    srv = fake(lambda body: (500, {"error": {"message": "boom"}}))
    b = OpenAIBackend(srv.url, "m", api_key_env="ABLAB_TEST_KEY", max_retries=2, backoff=0.01)
    with pytest.raises(OpenAIError, match="after 3 attempts; last: HTTP 500: boom") as e:
        b.sample(["p"], n=1)
    assert KEY not in str(e.value) and len(srv.requests) == 3
    srv2 = fake(lambda body: (400, {"error": {"message": "bad model"}}))
    b2 = OpenAIBackend(srv2.url, "m", backoff=0.01)
    with pytest.raises(OpenAIError, match="HTTP 400: bad model"):
        b2.sample(["p"], n=1)
    assert len(srv2.requests) == 1
    dead = OpenAIBackend("http://127.0.0.1:9", "m", max_retries=1, backoff=0.01)
    with pytest.raises(OpenAIError, match="after 2 attempts"):
        dead.sample(["p"])
    with pytest.raises(ValueError, match="ABLAB_UNSET_KEY"):
        OpenAIBackend(srv.url, "m", api_key_env="ABLAB_UNSET_KEY")


def test_concurrent_requests_keep_prompt_order_and_per_prompt_seeds(fake):
    srv = fake(lambda body: (200, _choices(body, with_lp=True)))
    b = OpenAIBackend(srv.url, "m", concurrency=4, logprobs=True, return_token_ids=False)
    prompts = [f"q{i}" for i in range(9)]
    out = b.sample(prompts, n=3, temperature=1.0, seed=100)
    assert [[s.text for s in g] for g in out] == [
        [f"q{i}|{k}|{request_seed(100, i)}" for k in range(3)] for i in range(9)]
    seeds = sorted(r["seed"] for r in srv.requests)
    assert all(b - a > 3 for a, b in zip(seeds, seeds[1:]))  # n seeds per request, apart
    s = out[0][0]  # no ids: the count comes from the log-probs
    assert s.token_ids == () and s.num_tokens == 2 and s.logprobs == (-0.5, -1.5)
    assert not s.tokens_estimated and all(r["logprobs"] == 0 for r in srv.requests)
    assert b.tokens_generated == 9 * 3 * 2


def test_greedy_is_one_decode_repeated_and_usage_split(fake):
    srv = fake(lambda body: (200, _choices(body)))
    b = OpenAIBackend(srv.url, "m", seed_requests=False, return_token_ids=False)
    out = b.sample(["p"], n=4, temperature=0.0)
    assert srv.requests[0]["n"] == 1 and "seed" not in srv.requests[0]
    assert len(out[0]) == 4 and len(set(out[0])) == 1
    assert out[0][0].num_tokens == 7 and not out[0][0].tokens_estimated  # usage of one choice
    out = b.sample(["p"], n=3, temperature=1.0)
    assert sum(s.num_tokens for s in out[0]) == 21 and out[0][0].tokens_estimated
    assert _split(10, [1, 1, 1]) == [4, 3, 3] and _split(0, [5, 1]) == [0, 0]


def test_token_ids_from_return_tokens_as_token_ids(fake):
    def reply(body):
        return 200, {"choices": [{"index": 0, "text": "ab", "finish_reason": "stop",
                                  "logprobs": {"tokens": ["token_id:5", "token_id:2"],
                                               "token_logprobs": [-0.1, -0.2]}}]}

    out = OpenAIBackend(fake(reply).url, "m", logprobs=True).sample(["p"])
    assert out == [[Sample("ab", (5, 2), (-0.1, -0.2), "stop")]]


def test_asks_for_token_ids_and_stops_asking_a_server_that_refuses_them(fake):
    """An API that rejects the unknown field gets the request again without it (and no
    more requests with it); its counts then come from usage, flagged when split."""

    def reply(body):
        if "return_token_ids" in body:
            return 400, {"error": {"message": "Unrecognized request argument supplied: return_token_ids"}}
        return 200, _choices(body)

    srv = fake(reply)
    b = OpenAIBackend(srv.url, "m", concurrency=1)
    out = b.sample(["p", "q"], n=2, temperature=1.0)
    assert ["return_token_ids" in r for r in srv.requests] == [True, False, False]
    assert not b.return_token_ids and b.retries == 0
    assert all(s.tokens_estimated and s.token_ids == () for g in out for s in g)
    assert sum(s.num_tokens for s in out[0]) == 14  # the request's usage, split
    srv2 = fake(lambda body: (200, _choices(body, with_ids=True)))
    exact = OpenAIBackend(srv2.url, "m").sample(["p"], n=2, temperature=1.0)
    assert all(s.num_tokens == 3 and not s.tokens_estimated for s in exact[0])
    assert all(r["return_token_ids"] is True for r in srv2.requests)


def test_retry_after_is_honoured(fake):
    import time

    calls = []

    def reply(body):
        calls.append(time.monotonic())
        return (429, {"error": {"message": "slow down"}}) if len(calls) == 1 else (200, _choices(body))

    srv = fake(reply)
    srv.retry_after = "0.6"
    b = OpenAIBackend(srv.url, "m", backoff=0.001, return_token_ids=False)
    b.sample(["p"])
    assert b.retries == 1 and calls[1] - calls[0] >= 0.55
