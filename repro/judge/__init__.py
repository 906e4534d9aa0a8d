"""Pure comparison: two records side by side (compare), a replay judged against its record
(checks), and samples of runs judged by their statistics (stats, statistical)."""
