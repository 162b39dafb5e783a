"""Outputs for people in their language (catalogue.py); the catalogues in catalogues/."""
