"""reports: tables, plots and HTML pages built from results."""
