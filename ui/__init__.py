"""The Gradio UI. Imports gradio, pandas and ftapp only, so it starts fast and never touches a GPU."""

from ui.app import build_app

__all__ = ["build_app"]
