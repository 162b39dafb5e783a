"""Key custody: agency keys, entitlement to personal data, releases, shredding."""
