"""A small OpenAI-compatible chat server on 127.0.0.1 for tests (real `openai` client, no mocks).

It answers /v1/chat/completions according to a word in the caption: RATE → 429 once then an
answer, THROTTLE → 429 with Retry-After: 2 once then an answer, BOOM → 500 twice then an answer, SLOW → sleeps past the client timeout once, MALFORMED →
prose with no list, NOTJSON → a 200 body that is not JSON, DOWN → always 503, else a numbered list
of five variants. It counts requests per caption and the most in flight.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeLLM:
    def __init__(self, slow_s: float = 1.0, hold_for: int = 0):
        self.counts: dict[str, int] = {}
        self.total = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.slow_s = slow_s
        self.hold_for = hold_for
        self.released = hold_for == 0  # the first this-many requests wait until all are in flight (or 3 s)
        self.cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                caption = prompt.rsplit("Caption:", 1)[1].strip()
                with fake.cond:
                    fake.total += 1
                    n = fake.counts[caption] = fake.counts.get(caption, 0) + 1
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    if fake.in_flight >= fake.hold_for:
                        fake.released = True
                    fake.cond.notify_all()
                    if fake.total <= fake.hold_for:  # the first wave waits until all of it is in flight
                        fake.cond.wait_for(lambda: fake.released, timeout=3)
                try:
                    fake.answer(self, self.path, body, caption, n)
                finally:
                    with fake.cond:
                        fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, h, path, body, caption, n):
        assert path == "/v1/chat/completions"
        if "THROTTLE" in caption and n == 1:  # a 429 asking for a 2 s pause
            return self.send(h, 429, {"error": {"message": "slow down", "type": "rate_limit"}}, {"Retry-After": "2"})
        if "RATE" in caption and n == 1:
            return self.send(h, 429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": "0"})
        if "BOOM" in caption and n <= 2:
            return self.send(h, 500, {"error": {"message": "internal", "type": "server_error"}})
        if "DOWN" in caption:
            return self.send(h, 503, {"error": {"message": "overloaded", "type": "server_error"}})
        if "SLOW" in caption and n == 1:
            time.sleep(self.slow_s)
        if "NOTJSON" in caption:
            return self.send_raw(h, 200, b"<html>gateway says hi</html>", "text/html")
        if "MALFORMED" in caption:
            content = "I am sorry, but I cannot rewrite this caption."
        else:
            content = "\n".join(f"{i}. {caption} variant {i}" for i in range(1, 6))
        self.send(h, 200, {"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": content}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})

    def send(self, h, status, obj, headers=None):
        self.send_raw(h, status, json.dumps(obj).encode(), "application/json", headers)

    @staticmethod
    def send_raw(h, status, data, ctype, headers=None):
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
