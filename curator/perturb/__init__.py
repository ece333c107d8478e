"""LLM perturbations of captions, Strategies 2 and 3 of arXiv 2404.09956 §4.1.

`templates/` holds the prompts, `parse` turns an answer into perturbed captions, `llm` is the
OpenAI-compatible Perturber (retries, timeouts), `run` the resumable runner over T1/T2.
"""
