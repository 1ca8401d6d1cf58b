"""The module a packaged Sprig (Briefcase) starts; Sprig itself is the ``desktop`` package."""
