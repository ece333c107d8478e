"""The automatic half of the Audio-alpaca curation studio (Tango 2, PAPER.md §4.1)."""

__version__ = "0.1.0"
