"""identifier: screening interviews and identification. Owns the Case aggregate."""
