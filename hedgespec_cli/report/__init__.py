"""Reports: statistics, run comparison, payload -> rich tables."""
