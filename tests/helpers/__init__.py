"""What several test modules share: scripted engines and toy worlds, small configs, the name
of the real model. Tests import them as `from helpers.NAME import ...` (tests/ is on the path)."""
