"""Sprig: chat with your own documents, offline, with a tiny local language model."""

import os as _os

__version__ = "0.1.0"
APP_NAME = "Sprig"

# Privacy switches that must be in the environment before any library we drive loads,
# in this process and in every child it starts (children inherit the environment).
# ONNX Runtime's official wheels send telemetry from native code unless
# ORT_DISABLE_TELEMETRY is set before it initialises; a Python-level guard never sees it.
PRIVACY_ENV = {
    "ORT_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
}
_os.environ.update(PRIVACY_ENV)
