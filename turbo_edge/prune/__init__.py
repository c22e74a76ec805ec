"""VDMini-style pruning of a consistency student: block importance, replayable plans, recovery training."""
