"""The agency registry: which organisations take part in the NRM, what they offer, and
whether they may identify victims. A versioned JSON file per country hub."""
