"""The rater app launched on a loopback port over a small pool, readers of its players HTML, and
playing its clips over HTTP."""

from __future__ import annotations

import re
from contextlib import contextmanager

from annotate_ui.logic import audit
from annotate_ui.web.app import launch
from annotate_ui.web.context import make_context
from builders.ports import free_port
from builders.ui import make_pool, make_users

# A caption that would run script if the app ever rendered text as HTML.
EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@contextmanager
def running_app(store_url, audio_store, *, n_pairs=6, n_raters=2, overlap=3, captions=None, concurrency=16):
    ctx = make_context(store_url, audio_store)
    with ctx.session() as s:
        pairs = make_pool(s, audio_store, n_pairs, captions=captions)
        users = make_users(s, n_raters=n_raters, admins=1)
        audit.enqueue(s, pairs, reason="random", added_by="admin0", overlap=overlap)
    port = free_port()
    demo = launch(ctx, port=port, prevent_thread_lock=True, concurrency=concurrency)
    try:
        yield ctx, f"http://127.0.0.1:{port}/", pairs, users
    finally:
        demo.close()


def play_all(h, players: str) -> None:
    """GET every player's clip with the logged-in httpx client H (what the browser does on play)."""
    for u in player_urls(players).values():
        assert h.get("/" + u).status_code == 200


def player_urls(players: str) -> dict[str, str]:
    """{side: media URL} of the players HTML."""
    return dict(re.findall(r'id="audio-([ab])" class="player"><div class="side">[AB]</div><audio[^>]* src="([^"]+)"', players))


def spectrogram_urls(players: str) -> dict[str, str]:
    """{side: media URL of the spectrogram image} of the players HTML."""
    return dict(re.findall(r'id="audio-([ab])" class="player">.*?<img class="spectrogram"[^>]* src="([^"]+)"', players))
