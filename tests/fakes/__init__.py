"""Fake outside systems for end-to-end tests: real servers on 127.0.0.1."""
