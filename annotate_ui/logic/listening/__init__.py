"""Listening sessions (arXiv 2404.09956 §5.3), as plain functions over a Session: `clipsets`
(one system's clips for a set of prompts), `design` (prompts × clip sets plus gold items),
`queue` (the rater side) and `results` (the admin side: statistics and export)."""
