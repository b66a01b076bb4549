"""The metrics mart: the published, approved numbers that BI tools read."""
