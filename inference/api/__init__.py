"""The JSON API: its bodies, their validation and its endpoints."""
