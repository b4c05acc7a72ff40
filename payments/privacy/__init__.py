"""Payers' personal data: key rotation of the sealed columns, retention, and what is held about a person."""
