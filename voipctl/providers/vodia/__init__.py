"""Vodia PBX: CDRs and levers through its REST API."""
