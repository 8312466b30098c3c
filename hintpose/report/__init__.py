"""Figures of the report stage, drawing helpers, and the demo."""
