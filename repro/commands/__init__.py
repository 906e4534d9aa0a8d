"""One module per command flow (run, replay, verify, compare, push, pull, doctor, init, diff's
history), and the helpers a flow split off (runsnapshot, runresults, replayinputs, ...)."""
