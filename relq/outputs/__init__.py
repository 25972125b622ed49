"""What leaves RelQ: Plotly figures (charts), the JSON report and the board report."""
