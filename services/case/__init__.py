"""The case core: the NRM rules several services share, as pure functions.

Services and their domains import these; nothing here imports a service, NATS or a key.
`ids` (ids derived from causes), `case` (a case's state, who may act on it), `consent`
(consent in force and what it covers), `referrals` (building a referral request, a
referral's state), `shelter_beds` (a shelter's beds and waiting list).
"""
