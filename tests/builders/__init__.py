"""Builders the tests share: store rows and small WAVs (pairs), rater-app pools and users (ui), a
loopback OpenAI-compatible chat server (llm_server). Not collected as tests (no test_ prefix);
imported as `builders.pairs` and so on (pytest puts tests/ on sys.path)."""
