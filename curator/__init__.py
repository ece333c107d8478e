"""The automatic half of the Audio-alpaca curation studio (Tango 2, arXiv 2404.09956 §4.1)."""

__version__ = "0.1.0"
