"""What the dashboards show beyond the headline: gap quadrants, retention and survival,
drivers, the segment explorer, voice of the customer and data quality. Builds on measures and store.
"""
