"""The rater app's Gradio and HTTP wiring: the app, its tabs and the charts they show. The work is
in annotate_ui.logic; these modules build components and wire events."""
