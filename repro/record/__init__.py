"""The record itself: the manifest schema, the run store, configuration, trust, redaction, bounded reads."""
