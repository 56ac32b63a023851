"""Plumbing every passclear service needs, written once."""
