"""Pure comparison: two records side by side (compare), a replay judged against its record (checks)."""
