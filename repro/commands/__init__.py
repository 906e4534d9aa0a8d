"""One module per command flow (run, replay, verify, diff's history, doctor, init)."""
