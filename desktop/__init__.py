"""Sprig: chat with your own documents, offline, with a tiny local language model."""

__version__ = "0.1.0"
APP_NAME = "Sprig"
