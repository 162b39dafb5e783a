"""referral: referrals to service providers, their answers and escalation. Owns the Referral
aggregate."""
