"""What BI tools import: a Superset bundle of one dataset per metric, its saved metric and a dashboard.

Built from the definitions and the mart's naming of each metric's relation (``metrics.<key>``); reads no
data. A sibling of ``web`` (neither imports the other); may import ``mart`` and ``definitions``.
"""
