"""Scores and their statistics: intervals and tests (stats, clustered), the headline numbers
(metrics), comparisons between segments and periods, and reliability of the pillars. Queries
return per-customer sufficient statistics; never whole tables.
"""
