"""The OpenAI-compatible Perturber: the official `openai` client against any chat endpoint.

Retries are ours, not the client's (it is built with max_retries=0), so they are bounded and
visible: a 429, a 5xx, a timeout or a dropped connection is retried up to `max_retries` times.
The wait is `backoff * 2**attempt` seconds capped at `max_backoff`, raised to the answer's
Retry-After (seconds or an HTTP date) or retry-after-ms header when that asks for longer (within
the cap), then stretched by a random factor in [1, 1 + jitter]: many threads that hit the same
429 at once wake at different moments instead of retrying in lockstep. Other 4xx answers (bad key, unknown model) are not retried:
every caption would fail the same way, so they raise `LLMFatalError` and the run stops.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import openai

from db.errors import CuratorError
from curator.perturb.parse import N_PERTURBATIONS, build_prompt, check_strategy, parse_perturbations

PLACEHOLDER_API_KEY = "no-key-needed"


class LLMFatalError(CuratorError):
    """The endpoint refuses every request (auth, unknown model, bad request): stop the run."""


class LLMRetriesExhausted(Exception):
    """One caption's request still failed after every retry (the caption stays to be asked)."""


def _retry_after(exc: Exception, now: float | None = None) -> float | None:
    """Seconds the answer asks the client to wait: retry-after-ms, or Retry-After as seconds or
    an HTTP date; None when it asks nothing (or nothing readable)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) if response is not None else None
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    try:
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection failed"
    return type(exc).__name__


@dataclass
class LLMConfig:
    """How to talk to the endpoint; validated on construction."""

    model: str
    base_url: str | None = None  # None: the client's default (OPENAI_BASE_URL or api.openai.com)
    api_key: str | None = None  # None: OPENAI_API_KEY, else a placeholder (local endpoints)
    timeout: float = 60.0  # seconds per request
    max_retries: int = 5  # retries after the first attempt
    backoff: float = 1.0  # first wait, doubled per retry
    max_backoff: float = 30.0
    jitter: float = 0.5  # each wait × a random factor in [1, 1 + jitter]
    temperature: float | None = None  # None: the endpoint's default
    n_expected: int = N_PERTURBATIONS

    def __post_init__(self) -> None:
        if not self.model or not self.model.strip():
            raise CuratorError("--model must name the LLM (e.g. gpt-4o or the served model id)")
        if not self.timeout > 0:
            raise CuratorError(f"--timeout must be positive, got {self.timeout}")
        if self.max_retries < 0:
            raise CuratorError(f"--max-retries must be 0 or more, got {self.max_retries}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise CuratorError(f"backoff must be 0 or more, got {self.backoff}/{self.max_backoff}")
        if not 0 <= self.jitter <= 10:
            raise CuratorError(f"jitter must be within [0, 10], got {self.jitter}")
        if self.temperature is not None and not 0 <= self.temperature <= 2:
            raise CuratorError(f"--temperature must be within [0, 2], got {self.temperature}")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise CuratorError(f"--base-url {self.base_url!r} is not an http(s) URL")


@dataclass
class OpenAIPerturber:
    """Perturber (curator.backends) over an OpenAI-compatible /chat/completions endpoint."""

    config: LLMConfig
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)  # the retry jitter (seed it in tests)
    notes: list[str] = field(default_factory=list)  # e.g. that a placeholder key is used

    def __post_init__(self) -> None:
        key = self.config.api_key if self.config.api_key is not None else os.environ.get("OPENAI_API_KEY")
        if not key:
            if self.config.base_url is None and not os.environ.get("OPENAI_BASE_URL"):
                raise CuratorError("OPENAI_API_KEY is not set (api.openai.com needs it); set it, or pass "
                                   "--base-url for an endpoint that needs no key")
            key = PLACEHOLDER_API_KEY
            self.notes.append("OPENAI_API_KEY is not set: sending a placeholder key (fine for endpoints that need none)")
        self.model = self.config.model
        self.client = openai.OpenAI(api_key=key, base_url=self.config.base_url,
                                    timeout=self.config.timeout, max_retries=0)

    @property
    def where(self) -> str:
        return str(self.client.base_url).rstrip("/")

    def retry_wait(self, attempt: int, hinted: float | None = None) -> float:
        """Seconds to wait before retry ATTEMPT + 1: the capped exponential backoff, at least HINTED
        (Retry-After) within the cap, times a random factor in [1, 1 + jitter]."""
        wait = min(self.config.max_backoff, self.config.backoff * 2 ** attempt)
        if hinted is not None:
            wait = min(self.config.max_backoff, max(wait, hinted))
        return wait * (1.0 + self.config.jitter * self.rng.random())

    def complete(self, prompt: str) -> str:
        """The endpoint's answer to PROMPT (raw text), with bounded retries."""
        extra = {} if self.config.temperature is None else {"temperature": self.config.temperature}
        for attempt in range(self.config.max_retries + 1):
            try:
                completion = self.client.chat.completions.create(
                    model=self.config.model, messages=[{"role": "user", "content": prompt}], **extra)
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as exc:
                if attempt == self.config.max_retries:
                    raise LLMRetriesExhausted(
                        f"{self.where}: {_describe(exc)} after {attempt + 1} attempts") from None
                self.sleep(self.retry_wait(attempt, _retry_after(exc)))
                continue
            except openai.APIResponseValidationError as exc:  # 2xx but not a completion: keep what came
                return exc.response.text
            except openai.APIStatusError as exc:
                body = exc.body.get("error", exc.body) if isinstance(exc.body, dict) else None
                detail = body.get("message") if isinstance(body, dict) else None
                msg = " ".join(str(detail or exc.message).split())[:200]
                raise LLMFatalError(f"LLM endpoint {self.where} answered HTTP {exc.status_code} "
                                    f"for model {self.config.model!r}: {msg}") from None
            if isinstance(completion, str):  # a 2xx body that is not JSON
                return completion
            choices = getattr(completion, "choices", None) or []
            message = getattr(choices[0], "message", None) if choices else None
            content = getattr(message, "content", None)
            # a missing text is still an answer: keep the whole completion so nothing is lost
            return content if isinstance(content, str) else completion.model_dump_json()
        raise AssertionError("unreachable")

    def perturb(self, caption: str, strategy: str) -> tuple[str, list[str]]:
        strategy = check_strategy(strategy)
        raw = self.complete(build_prompt(caption, strategy))
        return raw, parse_perturbations(raw, caption, expected=self.config.n_expected)
