"""The PySide6 window: the only package (with desktop/app.py) that imports Qt."""
