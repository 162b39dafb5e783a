"""shelter: shelters, beds and waiting lists. Owns the Shelter aggregate."""
